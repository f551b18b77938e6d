"""Stand-in for get-pip.py, used by ansible-test to seed pip into its sanity venvs."""
import ensurepip
import os
import runpy
import sys

ensurepip.bootstrap(upgrade=True)
# ensurepip points PIP_CONFIG_FILE at /dev/null, which would hide the configured package index.
os.environ.pop("PIP_CONFIG_FILE", None)
sys.argv = ["pip", "install"] + [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
runpy.run_module("pip", run_name="__main__")
