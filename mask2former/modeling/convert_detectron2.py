"""Convert a detectron2 Mask2Former checkpoint once into a Hugging Face folder.

    python -m mask2former.modeling.convert_detectron2 model_final_f07440.pkl weights/m2f_swinb_coco
    python train_two_stage.py --opts MODEL.WEIGHTS weights/m2f_swinb_coco

The input is the model zoo's pickle or a detectron2 training checkpoint (``model_final.pth``); the
output is ``config.json`` + ``model.safetensors`` of transformers' Mask2FormerForUniversalSegmentation
with the checkpoint's own architecture and class count, which ``MODEL.WEIGHTS`` then takes as it
takes hub weights (class head re-initialised for ``myotube``, learned queries kept).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..config import get_cfg
from ..errors import MyotubeError, WeightsError
from ..utils import add_version_argument
from .build import build_model
from .detectron2 import architecture, check_head, read_detectron2, swin_name
from .weights import load_detectron2_state

logger = logging.getLogger(__name__)


def convert(source: str, out_dir: str) -> str:
    """Write the Hugging Face folder for ``source``; returns a description of the model."""
    state = read_detectron2(source)
    if state is None:
        raise WeightsError(
            source, "not a detectron2 Mask2Former checkpoint (no backbone.* / sem_seg_head.* weights)"
        )
    check_head(source, state)
    arch = architecture(state)
    cfg = get_cfg()
    cfg.merge_from_list([item for key, value in arch.items() if key != "classes" for item in (key, value)])
    names = ["myotube"] if arch["classes"] == 1 else [f"class_{i}" for i in range(arch["classes"])]
    model = build_model(cfg, names)
    described = load_detectron2_state(model, source, state, cfg)
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise WeightsError(out_dir, "output folder exists and is not empty")
    model.save_pretrained(out_dir)
    return (
        f"{swin_name(arch)} Mask2Former, {arch['MODEL.MASK_FORMER.NUM_OBJECT_QUERIES']} queries, "
        f"{arch['classes']} classes: {described}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mask2former.modeling.convert_detectron2",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_argument(parser)
    parser.add_argument("source", help="detectron2 checkpoint: model zoo .pkl or a training model_final.pth")
    parser.add_argument("out_dir", help="Hugging Face folder to write (config.json + model.safetensors)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    try:
        print(f"Wrote {args.out_dir}: {convert(args.source, args.out_dir)}")
    except MyotubeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
