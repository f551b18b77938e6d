# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agents: a runtime (runtime.py), one side each (konnector.py, backend.py), their command line (cli.py),
and how they are run (deployment.py as a Deployment, local.py as a local process)."""
