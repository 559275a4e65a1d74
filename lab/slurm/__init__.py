"""The hardware lab's Slurm side: real slurmctld/slurmd/munged for simulated nodes.

`SlurmLab.start` runs one node's Slurm role (`SlurmRole`) in its network namespace; see
lab/slurm/lab.py. Only its tests drive it so far: lab nodes do not yet apply a role from their
user-data (cluster bootstrap, issue 5).
"""

from lab.slurm.config import SlurmRole, render_gres_conf, render_slurm_conf
from lab.slurm.lab import NodeSlurmStatus, SlurmLab, SlurmLabError

__all__ = [
    "NodeSlurmStatus",
    "SlurmLab",
    "SlurmLabError",
    "SlurmRole",
    "render_gres_conf",
    "render_slurm_conf",
]
