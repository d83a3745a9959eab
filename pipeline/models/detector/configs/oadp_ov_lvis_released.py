# OADP on OV-LVIS as released (commit 3bb7ac8 of the reference): the same as oadp_ov_lvis without the global head.
_base_ = ["./oadp_ov_lvis.py"]
model = dict(global_head=None)
