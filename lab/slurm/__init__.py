"""The hardware lab's Slurm side: real slurmctld/slurmd/munged for simulated nodes.

`SlurmLab.start` runs one node's Slurm role (images.slurm.SlurmRole, from its user-data) in its
network namespace; see lab/slurm/lab.py.
"""

from lab.slurm.lab import GPU_DEVICE, NodeSlurmStatus, SlurmLab, SlurmLabError

__all__ = ["GPU_DEVICE", "NodeSlurmStatus", "SlurmLab", "SlurmLabError"]
