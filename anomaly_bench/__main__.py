"""``python -m anomaly_bench``: the ``anomaly-bench`` command. Importing this module runs nothing."""

from anomaly_bench.cli import main

if __name__ == "__main__":
    main()
