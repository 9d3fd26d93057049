"""Hide-and-Seek (Singh et al., arXiv 1811.02545) as NVIDIA DALI operators, with numpy references."""
from dali_has.operator import hide_and_seek
from dali_has.spec import HaSConfig

__all__ = ["HaSConfig", "hide_and_seek"]
