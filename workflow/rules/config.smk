# The run's configuration: its layers merged, checked and completed by workflow/config_check.py (defaults from
# workflow/schemas/config.schema.yaml). A bad configuration stops here, before any job runs, with one message
# naming the key or file. No rules here.

import sys
from pathlib import Path

from snakemake.logging import logger

from workflow import config_check

try:
    _checked = config_check.configure(config, Path(workflow.basedir))
except config_check.ConfigError as err:
    sys.exit(config_check.error_block(err))  # the message alone, exit status 1 (no Snakemake traceback)
for _warning in _checked.warnings:
    logger.warning(_warning)
config.clear()
config.update(_checked.config)
PRETRAINED = _checked.pretrained  # {config key: path} of the files from elsewhere: rule inputs too
CUSTOM_SPLIT = _checked.custom_split
