"""The contract training and serving share: what a published model is and how its inputs and
outputs are read.

Model config (`model_config`), the repository's layout (`layout`), image preprocessing
(`preprocess`), the tokenizer (`text`), tensor dtypes (`dtypes`), ranked scores (`scores`), the
explainable-model format and Grad-CAM (`gradcam`), the default ports (`ports`) and the error
tree (`errors`). Only numpy, Pillow and the generated protobuf messages: no gRPC server, no ONNX
Runtime, no torch -- both sides import it, so an input is transformed the same way when trained
on and when served.
"""
