"""The models the stages build: CLIP (loading, the ViT variants OAKE needs) and the mmdet 3 detector. Nothing
here imports a stage."""
