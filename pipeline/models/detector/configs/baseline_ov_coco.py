# No distillation (a reference point, not in the paper's tables): the ViLD bbox head alone, trained on base boxes
# with the text embeddings as classifier; inference uses the bbox head only.
_base_ = ["./vild_ov_coco.py"]
model = dict(roi_head=dict(object_head=None))
