# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`python -m ansible_collections.klutch.bind.plugins.module_utils.agent konnector|backend ...`: cli.py."""

from ansible_collections.klutch.bind.plugins.module_utils.agent.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
