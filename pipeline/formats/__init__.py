"""The file formats that stages exchange, one module (or package) each, imported by their writers and their
readers alike: annotation files, prompt files, proposal files, detections, the feature-cache shards. Nothing here
imports a stage or a model."""
