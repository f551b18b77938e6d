# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lifecycle steps: each reads a cluster, asks a planner what to write, and writes it. The modules and the
agents call the same step."""
