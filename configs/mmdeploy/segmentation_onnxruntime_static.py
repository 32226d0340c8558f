# Segmentation to onnxruntime, input fixed to the size of the image given to
# mmdeploy (input_shape=None) or to onnx_config.input_shape when set.
_base_ = ['./_base_/onnxruntime.py']
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True)
