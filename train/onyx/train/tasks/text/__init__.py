"""Text classification: data files, RNN classifiers, generated reviews, the task."""
