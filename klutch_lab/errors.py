# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error type the lab raises: its message says what is wrong and how to fix it."""


class LabError(Exception):
    """A lab problem a person can act on; the CLI prints it without a traceback."""
