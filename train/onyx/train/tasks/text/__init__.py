"""Text classification: data files, RNN classifiers, the task."""
