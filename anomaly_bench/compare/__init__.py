"""``anomaly-bench-compare``: turn run folders into one table, grouped statistics and a report.

The pipeline is discover (find run folders) -> load (one record per folder, never raising)
-> table (differing config keys, metrics, grouping) -> a text format or the HTML report.
Compare only reads: it never writes into the folders it is given.
"""
