"""Region labels on the MNI grid in FreeSurfer LUT codes: the embedded atlas, FreeSurfer's wmparc, and the
per-subject parcellation that either backend yields (``parcellate_embedded``, ``parcellate_freesurfer``;
which one a run uses: ``headmri.backends``)."""

from headmri.parcellation.embedded_atlas import build_embedded_atlas, embedded_atlas_labels
from headmri.parcellation.subject import parcellate_embedded, parcellate_freesurfer

__all__ = ["build_embedded_atlas", "embedded_atlas_labels", "parcellate_embedded", "parcellate_freesurfer"]
