"""Pure decision logic shared by the collector, the Faust workers and Beam backfills.

Nothing in this package does I/O: functions take values and return values.
"""
