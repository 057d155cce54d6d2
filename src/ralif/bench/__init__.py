"""The benchmark shell: result store, runner and report."""
