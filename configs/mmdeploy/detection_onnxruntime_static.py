# One-stage detection (RetinaNet) to onnxruntime, input fixed to the size of
# the image given to mmdeploy. The post-processing is mmdeploy's: the boxes
# of each class above score_threshold go through ONNX NonMaxSuppression.
_base_ = ['./_base_/onnxruntime.py']
onnx_config = dict(output_names=['dets', 'labels'])
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1))
