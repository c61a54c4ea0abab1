"""Sampled payload logging: what a model saw and what it answered, written off the request path into rotating
shards that `pixelserve dataset` turns into an image-folder dataset for `pixelserve train`.

The request path calls `PayloadLog.sample` (cheap) and, when it says yes, `PayloadLog.offer` with a
`PayloadRecord` holding references only; a writer thread encodes, builds the rows with the row builder batch
scoring uses (`pixelserve.service.scoring.rows`) and writes the shards. A full buffer drops and counts, never waits.
"""

from .log import PayloadLog, PayloadLogError
from .record import LoggedTask, PayloadRecord

__all__ = ["LoggedTask", "PayloadLog", "PayloadLogError", "PayloadRecord"]
