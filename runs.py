"""Run bookkeeping shared by every script: atomic writes of checkpoints and JSON."""
import json
import os
from pathlib import Path

import torch


def save_atomic(obj, path):
    """Write a dict as JSON (.json) or anything else with torch.save; a kill mid-write leaves the old file."""
    path = Path(path)
    tmp = Path(str(path) + ".tmp")
    if isinstance(obj, dict) and path.suffix == ".json":
        tmp.write_text(json.dumps(obj, indent=1))
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)
