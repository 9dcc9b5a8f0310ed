"""Where events enter: the HTTP collector and the feed importers."""
