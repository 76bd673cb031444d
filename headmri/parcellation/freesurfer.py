"""FreeSurfer recon-all through Nipype: the source of ``wmparc.mgz`` for the freesurfer backend.

``recon_all_interface`` builds Nipype's ``ReconAll`` (``recon-all -all``) for one T1w. Two ways run it:

- ``run_recon_all`` runs the interface where ``recon-all`` is on PATH (a local FreeSurfer install).
- In the workflow, FreeSurfer lives in a container (``preprocessing.freesurfer.container``) that has no
  Python, so ``write_recon_all_script`` writes Nipype's exact command line into a shell script and the
  rule ``recon_all`` runs that script inside the container with ``FS_LICENSE`` set.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from pathlib import Path

from headmri.atomic import write_text
from headmri.errors import ConfigError, InputError

log = logging.getLogger(__name__)


def wmparc_path(subjects_dir: str | os.PathLike, subject_id: str) -> Path:
    return Path(subjects_dir) / subject_id / "mri" / "wmparc.mgz"


def recon_all_interface(
    t1w: str | os.PathLike,
    *,
    subject_id: str,
    subjects_dir: str | os.PathLike,
    threads: int = 1,
    directive: str = "all",
):
    """Nipype's ``ReconAll`` (``recon-all -all`` by default) on one T1w.

    With more than one thread, ``-openmp N`` parallelises within each step and ``-parallel`` runs the two
    hemispheres side by side. ``subjects_dir`` is created if missing (Nipype requires it to exist).
    """
    from nipype.interfaces.freesurfer import ReconAll

    if not Path(t1w).exists():
        raise InputError("the T1w image for recon-all does not exist", subject=subject_id, path=t1w)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    Path(subjects_dir).mkdir(parents=True, exist_ok=True)
    interface = ReconAll(
        subject_id=subject_id,
        directive=directive,
        T1_files=[str(t1w)],
        subjects_dir=str(subjects_dir),
        openmp=int(threads),
    )
    if threads > 1:
        interface.inputs.parallel = True
    return interface


def _check_license(license_file: str | os.PathLike | None) -> str:
    path = license_file or os.environ.get("FS_LICENSE")
    if not path:
        raise ConfigError("FreeSurfer needs a license: set preprocessing.freesurfer.license (or FS_LICENSE)")
    if not Path(path).is_file():
        raise ConfigError(f"the FreeSurfer license file {path} does not exist")
    return str(path)


def run_recon_all(
    t1w: str | os.PathLike,
    *,
    subject_id: str,
    subjects_dir: str | os.PathLike,
    threads: int = 1,
    license_file: str | os.PathLike | None = None,
    directive: str = "all",
) -> Path:
    """Run recon-all (local FreeSurfer) and return the subject's folder; with ``directive="all"`` its
    ``mri/wmparc.mgz`` is checked to exist. Nipype resumes an interrupted subject (it skips the steps
    whose outputs exist).
    """
    if shutil.which("recon-all") is None:
        raise ConfigError("recon-all is not on PATH: install FreeSurfer or use the workflow's container")
    os.environ["FS_LICENSE"] = _check_license(license_file)
    interface = recon_all_interface(
        t1w, subject_id=subject_id, subjects_dir=subjects_dir, threads=threads, directive=directive
    )
    log.info("running: %s", interface.cmdline)
    interface.run()
    out = wmparc_path(subjects_dir, subject_id)
    if directive == "all" and not out.exists():
        raise InputError(f"recon-all finished without {out.name}", subject=subject_id, path=out)
    return Path(subjects_dir) / subject_id


def write_recon_all_script(
    out_script: str | os.PathLike,
    *,
    t1w: str | os.PathLike,
    subject_id: str,
    subjects_dir: str | os.PathLike,
    threads: int = 1,
) -> str:
    """Write a bash script holding Nipype's recon-all command line, for the FreeSurfer container.

    The command always starts a fresh subject (``-i``): a subject folder left from an earlier T1w is
    removed first, since this job only reruns when its input changed. Returns the command line.
    """
    stale = Path(subjects_dir) / subject_id
    if stale.exists():
        log.warning("removing the stale FreeSurfer subject folder %s before a fresh recon-all", stale)
        shutil.rmtree(stale)
    cmdline = recon_all_interface(t1w, subject_id=subject_id, subjects_dir=subjects_dir, threads=threads).cmdline
    script = "\n".join(
        [
            "#!/usr/bin/env bash",
            "# Written by headmri.parcellation.freesurfer.write_recon_all_script (Nipype ReconAll).",
            "set -euo pipefail",
            ': "${FS_LICENSE:?FS_LICENSE must name the FreeSurfer license file}"',
            f"mkdir -p {shlex.quote(str(subjects_dir))}",
            cmdline,
            "",
        ]
    )
    write_text(script, out_script)
    return cmdline
