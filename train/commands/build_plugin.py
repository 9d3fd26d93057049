"""`dali-has build-plugin [--rebuild]`: build the fused Hide-and-Seek plugin now and say what is usable."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build-plugin", help="build the fused Hide-and-Seek plugin now; say where it is and what is usable",
        description="Builds the C++/CUDA plugin into its cache folder (the first use of hide_and_seek does the "
                    "same), loads it into DALI and prints where it is, whether the CPU operators load and whether "
                    "the CUDA kernel was built and can run on this machine's driver. A cached build failure is "
                    "reported as it is; --rebuild builds again (after fixing the compiler, for instance). "
                    "Exits 0 when the plugin is usable, 1 when it is not (the composition of DALI built-ins is "
                    "used instead).")
    p.add_argument("--rebuild", action="store_true", help="build again even if a library or a failure is cached")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dali_has import fused, plugin_build

    try:
        built = plugin_build.build(rebuild=args.rebuild)
    except plugin_build.PluginBuildError as error:
        print(f"plugin: not built: {error}")
        print("hide_and_seek uses the composition of DALI built-ins (same results, slower)")
        return 1
    print(f"plugin: {built.path}")
    if not fused.load():
        print(f"CPU operators: do not load: {fused.unavailable_reason()}")
        return 1
    print("CPU operators: usable")
    if not built.gpu:
        print(f"CUDA kernel: not built: {built.gpu_reason}")
    elif fused.gpu_available():
        print("CUDA kernel: usable")
    else:
        print(f"CUDA kernel: built, not usable here: {fused.gpu_unavailable_reason()}")
    return 0
