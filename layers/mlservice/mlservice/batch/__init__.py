"""Batch prediction: files dropped under batch/input/ are predicted into batch/output/, streamed in chunks
(bounded memory whatever the file's size) and, above a size threshold, fanned out over an SQS queue."""
