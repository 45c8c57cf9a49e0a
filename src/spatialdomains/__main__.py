"""``python -m spatialdomains``: the same click CLI as the ``spatialdomains`` console script.

Used by the pipeline's ``bin/spatialdomains`` shim (Nextflow puts ``bin/`` on every task's PATH), so a task
needs only a Python that can import the package, not the console script on PATH.
"""

from spatialdomains.cli import main

if __name__ == "__main__":
    main(prog_name="spatialdomains")
