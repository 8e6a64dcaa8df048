"""Image classification: data folders, CNNs, augmentation, pretrained weights, the task."""
