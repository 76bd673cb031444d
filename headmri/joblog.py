"""A job's log file holds the reason it failed.

Snakemake runs an adapter script in its own Python process and shows an uncaught exception on the
terminal only; on a cluster nobody reads that. ``job_log`` sets up logging into the job's log file and,
when the job fails, writes the reason there before the exception goes on to Snakemake: the message alone
for a ``HeadmriError`` (bad input or configuration: the message names subject, file and problem), the
message and the traceback for anything unexpected.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from headmri.errors import HeadmriError

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
log = logging.getLogger("headmri.job")


@contextlib.contextmanager
def job_log(path: str | os.PathLike, job: str) -> Iterator[None]:
    """Log into ``path`` (appended) during the block; a failure's reason is logged before it is raised."""
    logging.basicConfig(filename=os.fspath(path), level=logging.INFO, format=FORMAT, force=True)
    logging.captureWarnings(True)
    try:
        yield
    except HeadmriError as exc:
        log.error("%s failed: %s", job, exc)
        raise
    except BaseException:
        log.exception("%s failed with an unexpected error", job)
        raise
    finally:
        logging.shutdown()
