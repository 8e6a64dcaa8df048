"""`onyx evaluate`: scores of a checkpoint or an export on labelled data (`scoring`) and the
Grad-CAM gallery of a model's decisions (`gallery`)."""
