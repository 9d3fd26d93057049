"""Hide-and-Seek (Singh et al., arXiv 1811.02545) as NVIDIA DALI operators, with numpy references."""
from dali_has.feature_hide_and_seek import FeatureHideAndSeek, insert_after
from dali_has.operator import hide_and_seek
from dali_has.resize_mirror_normalize import resize_mirror_normalize_hide
from dali_has.spec import HaSConfig
from dali_has.temporal import hide_and_seek_temporal
from dali_has.temporal_spec import TemporalHaSConfig

__all__ = ["HaSConfig", "hide_and_seek", "resize_mirror_normalize_hide",
           "TemporalHaSConfig", "hide_and_seek_temporal", "FeatureHideAndSeek", "insert_after"]
