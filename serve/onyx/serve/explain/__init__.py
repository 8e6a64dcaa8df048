"""Explanations beside a prediction: Grad-CAM maps for image models (the math lives in
`onyx.contract.gradcam`, shared with training), token attributions for text models (`text`), and
the explained Classify path (`classify`)."""
