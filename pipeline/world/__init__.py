"""The demo's generated world, shared by the stages that draw it (``demo_data``, ``teacher``); imports no stage.

* :mod:`pipeline.world.grammar`: class names ``"<colour> [<texture>] <shape>"``, their synonyms, the caption
  templates and the kind of a base/novel split;
* :mod:`pipeline.world.draw`: seeded scenes ``[H, W, 3]`` uint8 with COCO-style objects (:func:`draw_image`);
* :mod:`pipeline.world.captions`: seeded captioned single-object crops ``[S, S, 3]`` uint8
  (:func:`draw_caption_crop`).
"""
