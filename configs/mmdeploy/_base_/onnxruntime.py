# mmdeploy deploy config parts shared by every onnxruntime config here
# (mmdeploy's own configs/ are not in its pip package, so nothing here
# names them). mmengine imports custom_imports when mmdeploy reads a deploy
# config: 'mmrep' registers mmrep's models, and mmrep.apis.mmdeploy_compat
# applies mmrep's shim to mmdeploy 1.3.1 (dynamo=False on torch >= 2.9,
# mmrep's loading and whole-model fusion, exact adaptive pooling).
custom_imports = dict(imports=['mmrep', 'mmrep.apis.mmdeploy_compat'],
                      allow_failed_imports=False)
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=17,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    # mmdeploy's optimizing passes need its TorchScript extension, built
    # for one torch release; the graph is exact without them.
    optimize=False)
backend_config = dict(type='onnxruntime')
