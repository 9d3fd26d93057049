"""make_loader: exact-once epochs per shard, len(), restarts, reproducibility, lifecycle, errors, validation.

The data set is a small ImageNet-style tree of JPEGs (varied sizes, non-square, one grayscale) plus file lists
over it in which every file has its own label, so the labels of an epoch identify its samples exactly.
"""
from __future__ import annotations

import copy
import gc
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from nvidia.dali.pipeline import OperatorConcurrency
from PIL import Image

from pipelines import UnreadableImageError, make_loader
from pipelines.settings import default_num_threads
from tests.pipelines.bad_images import undecodable_jpeg

N_IMAGES = 11
DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]
CROP = 16


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """DIR/<class>/*.jpg with 11 images in 3 classes; list_<n>.txt = the first n files, file i labelled i."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(N_IMAGES):
        height, width = 20 + 3 * i, 40 - 2 * i  # non-square both ways, one square-ish
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert("L" if i == 4 else "RGB")  # one grayscale JPEG
        path = root / f"class{i % 3}" / f"img{i:02d}.jpg"
        path.parent.mkdir(exist_ok=True)
        image.save(path, quality=90)
        lines.append(f"{path.relative_to(root)} {i}")
    for n in (7, N_IMAGES):
        (root / f"list_{n}.txt").write_text("\n".join(lines[:n]) + "\n")
    return root


@pytest.fixture(scope="session")
def pixel_list(tmp_path_factory) -> Path:
    """A file list of 11 decoded-pixel (.npy) images of different sizes, file i labelled i."""
    root = tmp_path_factory.mktemp("pixels")
    rng = np.random.default_rng(1)
    for i in range(N_IMAGES):
        np.save(root / f"img{i:02d}.npy", rng.integers(0, 256, (20 + 3 * i, 40 - 2 * i, 3), dtype=np.uint8))
    (root / "list.txt").write_text("".join(f"img{i:02d}.npy {i}\n" for i in range(N_IMAGES)))
    return root / "list.txt"


def epoch(loader) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    images, labels = [], []
    for x, y in loader:
        images.append(x)
        labels.append(y)
    return images, labels


def small_loader(data, **kwargs):
    kwargs = {"train": True, "batch_size": 3, "crop": CROP, "num_threads": 1, **kwargs}
    return make_loader(data, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("n", [7, N_IMAGES])
@pytest.mark.parametrize("num_shards,batch_size", [(1, 2), (1, 4), (2, 2), (2, 4), (3, 3), (3, 2)])
def test_every_sample_once_per_epoch_and_shards_cover_the_data_set(dataset, device, train, n, num_shards,
                                                                   batch_size):
    seen_by_shards = []
    for shard_id in range(num_shards):
        loader = small_loader(dataset / f"list_{n}.txt", train=train, batch_size=batch_size, device=device,
                              shard_id=shard_id, num_shards=num_shards, seed=0)
        assert loader.dataset_size == n
        assert loader.batch_size == batch_size
        assert len(loader) == -(-loader.num_samples // batch_size)
        shard_labels = None
        for _ in range(3):  # epochs stay exact after the first (shuffle buffer, padding, auto-reset)
            labels = epoch(loader)[1]
            assert len(labels) == len(loader)
            assert [len(y) for y in labels[:-1]] == [batch_size] * (len(labels) - 1)  # only the last is partial
            epoch_labels = torch.cat(labels).cpu().tolist()
            assert len(epoch_labels) == loader.num_samples
            assert len(set(epoch_labels)) == loader.num_samples  # no duplicates, no padding
            shard_labels = shard_labels or set(epoch_labels)
            assert set(epoch_labels) == shard_labels  # a shard keeps its samples
        seen_by_shards.append(shard_labels)
    assert sorted(label for shard in seen_by_shards for label in shard) == list(range(n))


@pytest.mark.parametrize("device", DEVICES)
def test_full_operator_concurrency_gives_the_same_batches(dataset, device):
    """DALI keeps each operator's batches in order whatever it overlaps, so crops, flips and hidden cells are the
    same draws; on the CPU the policy reaches the pipeline but changes nothing (CPU operators run one at a time)."""
    has = {"patch_sizes": [0, 4], "p_hide": 0.5}
    loaders = {policy: small_loader(dataset, device=device, seed=3, has=has, operator_concurrency=policy)
               for policy in ("backend", "full")}
    assert loaders["full"].pipeline.concurrency == OperatorConcurrency.FULL
    assert loaders["backend"].pipeline.concurrency == OperatorConcurrency.BACKEND
    for _ in range(2):  # two epochs
        (backend_images, backend_labels), (full_images, full_labels) = epoch(loaders["backend"]), epoch(loaders["full"])
        assert [y.tolist() for y in full_labels] == [y.tolist() for y in backend_labels]
        for full, backend in zip(full_images, backend_images, strict=True):
            torch.testing.assert_close(full, backend, rtol=0, atol=0)


def test_folder_tree_labels_are_sorted_class_folders(dataset):
    _, labels = epoch(small_loader(dataset, train=False))
    expected = sorted(i % 3 for i in range(N_IMAGES))  # in order: class0's files, then class1's, ...
    assert torch.cat(labels).tolist() == expected


@pytest.mark.parametrize("device", DEVICES)
def test_batches_have_the_promised_shape_dtype_and_device(dataset, device):
    # The decoder hints only matter to the GPU's hardware decoder; on the CPU they must be harmless.
    loader = small_loader(dataset, batch_size=4, device=device, hw_decoder_load=0.9, preallocate_hint=(64, 64))
    images, labels = epoch(loader)
    for x, y in zip(images, labels):
        assert x.shape == (len(y), 3, CROP, CROP) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and y.ndim == 1
        assert x.device.type == y.device.type == ("cuda" if device == "gpu" else "cpu")
    assert [len(y) for y in labels] == [4, 4, 3]


def test_each_epoch_draws_new_crops_and_a_fixed_seed_repeats_them(dataset):
    def two_epochs(seed):
        loader = small_loader(dataset / "list_11.txt", seed=seed)
        return [_by_label(*epoch(loader)) for _ in range(2)]

    first, second = two_epochs(5), two_epochs(5)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], first[1])  # epoch 2 is augmented anew
    assert not torch.equal(first[0], two_epochs(6)[0])


def test_break_mid_epoch_then_a_new_for_is_a_fresh_full_epoch(dataset):
    loader = small_loader(dataset / "list_11.txt", batch_size=2, seed=1)
    abandoned = iter(loader)
    next(abandoned)
    first_pipeline = weakref.ref(loader.pipeline)
    images, labels = epoch(loader)
    assert sorted(torch.cat(labels).tolist()) == list(range(N_IMAGES))
    assert len(labels) == len(loader)
    gc.collect()
    assert first_pipeline() is None  # the unfinished pipeline was rebuilt, not kept
    with pytest.raises(RuntimeError, match="newer `for`"):
        next(abandoned)
    # And the rebuilt pipelines are seeded reproducibly.
    again = small_loader(dataset / "list_11.txt", batch_size=2, seed=1)
    next(iter(again))
    assert torch.equal(_by_label(*epoch(again)), _by_label(images, labels))


def test_iter_without_drawing_a_batch_loses_nothing(dataset):
    loader = small_loader(dataset / "list_11.txt")
    iter(loader)
    pipeline = loader.pipeline
    _, labels = epoch(loader)
    assert loader.pipeline is pipeline  # nothing drawn, so no rebuild was needed
    assert sorted(torch.cat(labels).tolist()) == list(range(N_IMAGES))


@pytest.mark.parametrize("has", [None, {"patch_sizes": [0, 4], "p_hide": 0.5}])
@pytest.mark.parametrize("stored", ["jpeg", "npy"])  # fn.readers.file / fn.readers.numpy
def test_a_saved_state_resumes_the_next_epochs_exactly(dataset, pixel_list, has, stored):
    def epochs(loader, n):
        return [_by_label(*epoch(loader)) for _ in range(n)]

    data = dataset / "list_11.txt" if stored == "jpeg" else pixel_list
    make = lambda: small_loader(data, seed=2, checkpointing=True, has=has)  # noqa: E731
    original = make()
    epochs(original, 1)
    state = original.state_dict()
    ahead = epochs(original, 2)
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.pipeline is not None and len(resumed) == len(original)
    for a, b in zip(ahead, epochs(resumed, 2)):
        assert torch.equal(a, b)
    assert not torch.equal(ahead[0], epochs(make(), 1)[0])  # not trivially: a fresh loader draws other crops


def test_a_state_taken_after_a_for_stopped_early_resumes_as_the_rebuild_it_implies(dataset):
    make = lambda: small_loader(dataset / "list_11.txt", batch_size=2, seed=4, checkpointing=True)  # noqa: E731
    original = make()
    next(iter(original))  # a `for` that stopped after one batch: the next `for` rebuilds
    state = original.state_dict()
    assert state["pipeline"] is None and state["rebuilds"] == 1
    resumed = make()
    resumed.load_state_dict(state)
    assert torch.equal(_by_label(*epoch(original)), _by_label(*epoch(resumed)))


def test_a_state_is_not_taken_inside_an_epoch(dataset):
    """Before: a state taken in the loop body ("checkpoint every N steps") said the next `for` rebuilds, yet the
    epoch went on to its end, and a loader resumed from it gave other batches, without a word."""
    loader = small_loader(dataset / "list_11.txt", batch_size=2, seed=4, checkpointing=True)
    for step, _ in enumerate(loader):
        if step == 1:
            with pytest.raises(RuntimeError, match="inside an epoch.*after the `for` ends or stops"):
                loader.state_dict()
            break
    assert loader.state_dict()["rebuilds"] == 1  # stopped early: the next `for` rebuilds
    epoch(loader)
    assert loader.state_dict()["rebuilds"] == 1 and loader.state_dict()["pipeline"] is not None


def test_a_forked_process_is_told_to_make_its_own_loader(dataset):
    """Before: a `for` in a fork (a torch DataLoader worker) waited for ever on the parent's DALI threads."""
    loader = small_loader(dataset / "list_7.txt")
    child = os.fork()
    if child == 0:  # the child reports by exit status only, and never runs pytest's teardown
        signal.alarm(60)  # a hang ends the child with SIGALRM
        try:
            next(iter(loader))
        except RuntimeError as error:
            os._exit(0 if "a fork of it" in str(error) else 1)
        os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(epoch(loader)[1]) == len(loader)  # the parent's loader is untouched


def test_a_state_whose_checkpoint_is_not_at_an_epoch_start_is_refused(dataset):
    """An edited DALI iterator record was restored as it said: 8 of 21 samples an epoch while len() said 6."""
    make = lambda: small_loader(dataset / "list_11.txt", batch_size=2, seed=4, checkpointing=True)  # noqa: E731
    original = make()
    epoch(original)
    state = original.state_dict()
    for edit in ((b'"_size": 11', b'"_size":  5'), (b'"_counter": 0', b'"_counter": 9'),
                 (b'"_shards_id": [0]', b'"_shards_id": [1]')):
        assert state["pipeline"].count(edit[0]) == 1
        resumed = make()
        with pytest.raises(ValueError, match="does not stand at the start of an epoch.*damaged or edited"):
            resumed.load_state_dict({**state, "pipeline": state["pipeline"].replace(*edit)})
        assert len(epoch(resumed)[1]) == len(resumed)  # left as it was
    batches = f'"iter": {len(original)}'.encode()  # the pipeline's record: a string failed the first batch
    assert state["pipeline"].count(batches) == 1
    resumed = make()
    for edited, shown in (((batches, b'"iter":""'), "consumer_iter as ''"),  # each as long as the original
                          ((batches, b'"iter":-6'), "consumer_iter as -6"),
                          ((b'"epoch_idx": 0', b'"epoch_idx":-1'), "epoch_idx as -1")):
        assert state["pipeline"].count(edited[0]) == 1
        with pytest.raises(ValueError, match=f"records the pipeline's {shown}: it was damaged"):
            resumed.load_state_dict({**state, "pipeline": state["pipeline"].replace(*edited)})
    assert len(epoch(resumed)[1]) == len(resumed)  # left as it was
    # A count beyond int64 in the iterator's record: DALI's OverflowError left the loader closed.
    resumed = make()
    with pytest.raises(ValueError, match="damaged \\(OverflowError"):
        resumed.load_state_dict({**state, "pipeline": with_iterator_record(state["pipeline"], _counter=2**63)})
    assert len(epoch(resumed)[1]) == len(resumed)
    for damage, said in (((b'"_counter"', b'"_counteX"'), "damaged \\(KeyError"),  # left the loader closed
                         ((b'"_size"', b'"\xffsize"'), "damaged \\(UnicodeDecodeError")):  # said nothing of the state
        resumed = make()
        with pytest.raises(ValueError, match=f"the loader state's DALI checkpoint is {said}"):
            resumed.load_state_dict({**state, "pipeline": state["pipeline"].replace(*damage)})
        assert len(epoch(resumed)[1]) == len(resumed)  # left as it was
    resumed = make()
    opened = type(resumed)._open

    def damaged_reader_record(self, checkpoint=None):  # what DALI raises for one byte changed in a reader's record
        if checkpoint == state["pipeline"]:
            raise RuntimeError("Failed to deserialize loader state snapshot from protobuf")
        opened(self, checkpoint)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(resumed), "_open", damaged_reader_record)
        with pytest.raises(ValueError, match="damaged \\(RuntimeError: Failed to deserialize"):
            resumed.load_state_dict(state)
    assert len(epoch(resumed)[1]) == len(resumed)  # it was left closed
    resumed = make()
    resumed.load_state_dict(state)
    assert torch.equal(_by_label(*epoch(original)), _by_label(*epoch(resumed)))


def test_a_reader_state_dali_would_wait_on_for_ever_is_refused(dataset):
    """DALI restores a reader's generator from any text; one stuck at 0 ("abc", "0", 2^31 - 1) made the next
    `for` wait for ever (a crafted checkpoint hung `train --resume`). The state is refused, the loader kept."""
    make = lambda: small_loader(dataset / "list_11.txt", batch_size=2, seed=4, checkpointing=True)  # noqa: E731
    original = make()
    epoch(original)
    state = original.state_dict()
    # DALI 2.4's layout (see pipelines.dali_checkpoint): the reader's operator record, its state, the loader's
    # state, the generator's text, each behind its one-byte length.
    written = re.search(rb"\n(.)\n\x06Reader\x12(.)\n(.)\n(.)(\d+)\x10", state["pipeline"], re.S)
    assert written is not None and len(written.group(5)) == written.group(4)[0]
    for stuck in (b"0", b"2147483647", b"abc"):
        grown = len(stuck) - len(written.group(5))
        op, reader_state, loader_state, _ = (written.group(i)[0] + grown for i in range(1, 5))
        record = b"\n%c\n\x06Reader\x12%c\n%c\n%c%s\x10" % (op, reader_state, loader_state, len(stuck), stuck)
        edited = state["pipeline"].replace(written.group(0), record)
        resumed = make()
        with pytest.raises(ValueError, match=f"damaged or edited: the reader's generator state b'{stuck.decode()}'"
                                             " is not one DALI writes"):
            resumed.load_state_dict({**state, "pipeline": edited})
        assert len(epoch(resumed)[1]) == len(resumed)  # left as it was
    with pytest.raises(ValueError, match="damaged or edited: not a DALI checkpoint of this loader's pipeline: 0 "
                                         "states of the reader 'Reader'"):
        make().load_state_dict({**state, "pipeline": state["pipeline"].replace(b"\x06Reader", b"\x06Other_")})


@pytest.mark.parametrize("num_shards", [2, 3])
def test_every_shard_of_a_split_loader_resumes_exactly(dataset, num_shards):
    """DALI keeps the record of all shards in each one's checkpoint: a check that expected only its own refused every
    state of a loader split across ranks, so multi-rank training never resumed exactly."""
    for shard_id in range(num_shards):  # 11 samples: shards of 5, 6 or 3, 4, 4
        options = dict(batch_size=2, seed=4, shard_id=shard_id, num_shards=num_shards, checkpointing=True)
        original = small_loader(dataset / "list_11.txt", **options)
        epoch(original)
        resumed = small_loader(dataset / "list_11.txt", **options)
        resumed.load_state_dict(original.state_dict())
        (images, labels), (resumed_images, resumed_labels) = epoch(original), epoch(resumed)
        assert torch.equal(torch.cat(labels), torch.cat(resumed_labels))  # the same samples in the same order
        assert torch.equal(torch.cat(images), torch.cat(resumed_images))  # with the same crops, flips and masks


def test_loader_states_are_checked(dataset):
    with pytest.raises(ValueError, match="checkpointing=True"):
        small_loader(dataset).state_dict()
    state = small_loader(dataset / "list_7.txt", checkpointing=True).state_dict()
    other = small_loader(dataset / "list_11.txt", checkpointing=True)
    with pytest.raises(ValueError, match="another data set or shard"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="not a loader state"):
        other.load_state_dict({"pipeline": b""})
    with pytest.raises(ValueError, match=r"'settings', 'shard', 'version'\] and version 2"):  # the keys of version 2
        other.load_state_dict({**state, "version": 3})
    # Without checkpointing the state was restored, and the epoch after it ended in state_dict()'s refusal.
    with pytest.raises(ValueError, match="load_state_dict.. needs a loader made with checkpointing=True"):
        small_loader(dataset / "list_7.txt").load_state_dict(state)
    with pytest.raises(ValueError, match="checkpoint of type str"):
        small_loader(dataset, checkpoint="not bytes")
    with pytest.raises(ValueError, match="damaged or edited: not a DALI checkpoint of this loader's pipeline"):
        small_loader(dataset, checkpoint=b"not a checkpoint")
    evaluation = small_loader(dataset, train=False, checkpointing=True)
    epoch(evaluation)
    with pytest.raises(ValueError, match="cannot be restored by this loader.s pipeline.*another pipeline"):
        small_loader(dataset, checkpoint=evaluation.state_dict()["pipeline"])


def test_a_refused_state_leaves_the_loader_as_it_was(dataset):
    """Before: the old pipeline was closed first, and every later `for` raised "this loader is closed"."""
    make = lambda: small_loader(dataset / "list_11.txt", seed=3, checkpointing=True)  # noqa: E731
    loader = make()
    epoch(loader)
    state = loader.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    expected = _by_label(*epoch(resumed))
    for bad, message in ((dict(state, rebuilds=-1), "rebuilds=-1"),
                         (dict(state, pipeline="x"), "pipeline is a str"),
                         (dict(state, pipeline=b"junk"), "damaged or edited: not a DALI checkpoint"),
                         (dict(state, pipeline=state["pipeline"][:20]), "damaged or edited: not a DALI checkpoint")):
        with pytest.raises(ValueError, match=message):
            loader.load_state_dict(bad)
    assert torch.equal(_by_label(*epoch(loader)), expected)  # the epoch the loader was about to start
    evaluation = small_loader(dataset / "list_11.txt", train=False, checkpointing=True)
    with pytest.raises(ValueError, match="other settings: .*train True"):
        evaluation.load_state_dict(state)
    assert sorted(torch.cat(epoch(evaluation)[1]).tolist()) == list(range(N_IMAGES))
    # Version 1 had no settings; relabelled so, any state skipped the settings check and resumed other batches.
    no_settings = {key: value for key, value in state.items() if key != "settings"}
    for relabelled in (dict(no_settings, version=1), dict(state, version=2.0), dict(state, version=True)):
        with pytest.raises(ValueError, match="not a loader state of this version"):
            evaluation.load_state_dict(relabelled)


@pytest.mark.parametrize("change, named", [(dict(seed=4), "seed 3 (this loader: 4)"),
                                           (dict(batch_size=2), "batch_size 3 (this loader: 2)"),
                                           (dict(crop=CROP + 8), f"crop {CROP} (this loader: {CROP + 8})"),
                                           (dict(has={"patch_sizes": [4]}), "augment"),
                                           (dict(data="list_11_relabelled.txt"), "samples")])
def test_a_state_of_other_settings_or_data_is_refused(dataset, change, named):
    """DALI restores such a state without a word and the loader yields other batches than the saved run's."""
    relabelled = dataset / "list_11_relabelled.txt"  # the same files, other labels: another data set
    relabelled.write_text("".join(f"{line.rsplit(' ', 1)[0]} {(int(line.rsplit(' ', 1)[1]) + 1) % N_IMAGES}\n"
                                  for line in (dataset / "list_11.txt").read_text().splitlines()))
    kwargs = {"data": dataset / "list_11.txt", "seed": 3, "checkpointing": True}
    state = small_loader(**kwargs).state_dict()
    changed = {**kwargs, **change}
    changed["data"] = dataset / changed["data"]
    with pytest.raises(ValueError, match=re.escape(named)):
        small_loader(**changed).load_state_dict(state)
    small_loader(**kwargs).load_state_dict(state)  # the same settings: accepted


def test_default_threads_share_the_cores_among_the_processes_of_a_node(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_num_threads() == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(4 * cores))
    assert default_num_threads() == 1


def test_plain_torch_training_loop(dataset):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    for images, labels in small_loader(dataset, has={"patch_sizes": [0, 4], "p_hide": 0.5}):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_close_and_del_release_the_pipeline(dataset):
    loader = small_loader(dataset)
    batches = iter(loader)
    next(batches)  # mid-epoch, prefetching
    pipeline = weakref.ref(loader.pipeline)
    del loader, batches
    gc.collect()
    assert pipeline() is None

    with small_loader(dataset) as loader:
        pipeline = weakref.ref(loader.pipeline)
    gc.collect()
    assert pipeline() is None and loader.pipeline is None
    with pytest.raises(RuntimeError, match="closed"):
        iter(loader)


def test_interpreter_exits_cleanly_mid_epoch(dataset):
    # Half an epoch drawn, loader and its epoch iterator left alive as globals: exit must not hang.
    script = textwrap.dedent(f"""
        from pipelines import make_loader
        loader = make_loader({str(dataset)!r}, train=True, batch_size=2, crop=8, num_threads=2)
        batches = iter(loader)
        for _ in range(len(loader) // 2):
            next(batches)
        print("half an epoch done", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert "half an epoch done" in done.stdout


def copy_of(dataset, folder) -> list[Path]:
    good = sorted(dataset.glob("class*/*.jpg"))
    for path in good:
        (folder / path.parent.name).mkdir(exist_ok=True)
        (folder / path.parent.name / path.name).write_bytes(path.read_bytes())
    return good


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("source", ["folder", "list"])
def test_a_jpeg_that_fails_to_decode_is_named_with_the_scan_hint(tmp_path, dataset, train, source):
    good = copy_of(dataset, tmp_path)
    bad = tmp_path / "class1" / "undecodable.jpg"
    bad.write_bytes(undecodable_jpeg(good[0].read_bytes()))  # passes the listing check: only decoding fails
    files = sorted(tmp_path.glob("class*/*.jpg"))
    (tmp_path / "list.txt").write_text("".join(f"{p.relative_to(tmp_path)} {i}\n" for i, p in enumerate(files)))
    data = tmp_path if source == "folder" else tmp_path / "list.txt"
    loader = small_loader(data, train=train, seed=0)
    with pytest.raises(UnreadableImageError) as error:
        epoch(loader)
    assert error.value.paths == [str(bad)]
    assert str(bad) in str(error.value) and "dali-has scan" in str(error.value)
    assert "corrupt or truncated" in str(error.value)


def test_only_the_shard_holding_a_corrupt_jpeg_fails_and_names_it(tmp_path, dataset):
    good = sorted(dataset.glob("class*/*.jpg"))
    bad = tmp_path / "undecodable.jpg"
    bad.write_bytes(undecodable_jpeg(good[0].read_bytes()))
    (tmp_path / "list.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate([*good, bad])))
    failures = []
    for shard_id in range(3):
        try:
            epoch(small_loader(tmp_path / "list.txt", shard_id=shard_id, num_shards=3, seed=0))
        except UnreadableImageError as error:
            failures.append(error.paths)
    assert failures == [[str(bad)]]


def test_a_bad_file_dali_does_not_name_is_found_in_a_shuffled_shard(tmp_path, dataset):
    # A shuffled reader permutes the whole list (fixed seed) before sharding it, so a training shard's files are
    # not a contiguous part of the list; the search for a file DALI did not name (the GPU decoders' failures
    # may not) must still find it. Which shard holds it: the one whose epoch fails (DALI names it on the CPU).
    good = sorted(dataset.glob("class*/*.jpg"))
    bad = tmp_path / "undecodable.jpg"
    bad.write_bytes(undecodable_jpeg(good[0].read_bytes()))
    (tmp_path / "list.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate([*good, bad])))
    loaders = [small_loader(tmp_path / "list.txt", shard_id=shard_id, num_shards=3, seed=0) for shard_id in range(3)]
    holding = []
    for loader in loaders:
        try:
            epoch(loader)
        except UnreadableImageError:
            holding.append(loader)
    (loader,) = holding
    unnamed = RuntimeError("Error in thread 0: nvImageCodec failure: '#7'")  # a decoder status, no file
    assert loader._explain(unnamed).paths == [str(bad)]


@pytest.mark.parametrize("change,says", [
    (lambda data: data[:len(data) // 2], "shorter than its .npy header says"),
    (lambda data: b"garbage!" + data[8:], "not a .npy file"),
    (lambda data: b"", "missing, empty or unreadable"),
])
def test_a_pixel_file_changed_after_listing_is_named(tmp_path, change, says):
    # The listing check read every header; a file cut or overwritten afterwards fails in the reader.
    (tmp_path / "a").mkdir()
    for i in range(6):
        np.save(tmp_path / "a" / f"{i}.npy", np.full((40, 50, 3), i, np.uint8))
    loader = small_loader(tmp_path, crop=16, seed=0)
    bad = tmp_path / "a" / "3.npy"
    bad.write_bytes(change(bad.read_bytes()))
    with pytest.raises(UnreadableImageError, match=says) as error:
        epoch(loader)
    assert error.value.paths == [str(bad)]


def test_a_zero_byte_file_is_named(tmp_path, dataset):
    good = sorted(dataset.glob("class*/*.jpg"))[:4]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    (tmp_path / "list.txt").write_text("".join(f"{p} 0\n" for p in [*good, empty]))
    with pytest.raises(UnreadableImageError, match="empty.jpg") as error:
        epoch(small_loader(tmp_path / "list.txt"))
    assert error.value.paths == [str(empty)]


@pytest.mark.parametrize("kwargs,named", [
    ({"batch_size": 0}, "batch_size=0"),
    ({"crop": 0}, "crop=0"),
    ({"crop": 2.5}, "crop=2.5"),
    ({"device": "tpu"}, "device='tpu'"),
    ({"dtype": torch.int8}, "dtype=torch.int8"),
    ({"layout": "CHW"}, "layout='CHW'"),
    ({"hw_decoder_load": 1.5}, "hw_decoder_load=1.5"),
    ({"preallocate_hint": (1.5, 2)}, "preallocate_hint=1.5 must be a whole number"),  # was taken as 1
    ({"shard_id": 2, "num_shards": 2}, "shard_id=2"),
    ({"shard_id": -1}, "shard_id=-1"),
    ({"num_shards": 0}, "num_shards=0"),
    ({"num_shards": 2**32, "shard_id": 2**32 - 1}, "num_shards=4294967296"),  # DALI's int32 wrapped: SIGFPE
    ({"num_shards": 2**32 + 1}, "num_shards=4294967297"),  # wrapped to 1: every rank read every sample
    ({"num_threads": 0}, "num_threads=0"),
    ({"operator_concurrency": "all"}, "operator_concurrency='all'; expected one of 'backend', 'full'"),
    ({"seed": -3}, "seed=-3"),
    ({"mean": (1.0, 2.0)}, "mean="),
    ({"std": (0.0, 1.0, 1.0)}, "std="),
    ({"std": (0.229, 0.224, 0.225)}, "0..255"),
    ({"mean": (0.485, 0.456, 0.406)}, "mean=(0.485, 0.456, 0.406) looks like the 0..1 scale"),  # was taken
    ({"augment": {"random_area": (0.5, 0.2)}}, "random_area="),
    ({"augment": {"random_aspect_ratio": (0, 1)}}, "random_aspect_ratio="),
    ({"augment": {"shuffle_buffer": 0}}, "shuffle_buffer=0"),
    ({"augment": {"shuffle_buffer": 2**31}}, "shuffle_buffer=2147483648 must be a whole number >= 1 and <= 1048576"),
    ({"has": {"patch_size": 8}}, "patch_size"),
    ({"has": {"p_hide": 2}}, "p_hide=2"),
    ({"has": "yes"}, "has='yes'"),
    ({"train": False, "has": {"bogus": 1}}, "bogus"),  # ignored at evaluation, but still checked
    ({"train": "yes"}, "train='yes'"),
    ({"ten_crop": True}, "ten_crop"),
    ({"train": False, "resize": 8}, "resize=8"),
    ({"resize": 64}, "resize=64 is an evaluation setting"),  # was ignored with train=True
    ({"train": False, "crop": 8192}, "crop=8192: evaluation resizes the shorter side to crop / 0.875 = 9362"),
    ({"num_shards": 12, "shard_id": 0}, "num_shards=12 is more than the data set's samples"),
])
def test_bad_settings_are_named(dataset, kwargs, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        small_loader(dataset / "list_11.txt", **kwargs)


def test_bad_data_paths_are_explained(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="does not exist"):
        small_loader(tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)  # "" was the current folder, trained on when it held class folders
    with pytest.raises(ValueError, match="data='' is an empty path"):
        small_loader("")
    with pytest.raises(ValueError, match="'/dev/null' is neither a file nor a folder"):
        small_loader("/dev/null")
    with pytest.raises(ValueError, match="has no class folders"):
        small_loader(tmp_path)
    (tmp_path / "c").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        small_loader(tmp_path)


def with_iterator_record(checkpoint: bytes, **changes) -> bytes:
    """`checkpoint` (DALI 2.4) with entries of its last record, the iterator's JSON, changed; lengths re-encoded.
    It ends in ExternalContextCheckpoint {1: pipeline_data, 2: iterator_data} (see pipelines.dali_checkpoint)."""
    def varint(value: int) -> bytes:
        out = b""
        while True:
            out += bytes([value & 0x7F | (0x80 if value > 0x7F else 0)])
            value >>= 7
            if not value:
                return out

    pipeline_data = re.search(rb'\{"iter": \d+, "epoch_idx": \d+\}', checkpoint).group(0)
    iterator_data = checkpoint[checkpoint.index(b'{"_counter"'):]
    def context(record: bytes) -> bytes:
        inner = b"\n" + varint(len(pipeline_data)) + pipeline_data + b"\x12" + varint(len(record)) + record
        return b"\x12" + varint(len(inner)) + inner

    head = checkpoint[:len(checkpoint) - len(context(iterator_data))]
    assert head + context(iterator_data) == checkpoint  # the layout this helper knows
    return head + context(json.dumps({**json.loads(iterator_data), **changes}).encode())


def _by_label(images: list[torch.Tensor], labels: list[torch.Tensor]) -> torch.Tensor:
    """An epoch's images sorted by label, to compare epochs whose order was shuffled."""
    images, labels = torch.cat(images), torch.cat(labels)
    return images[labels.argsort()].cpu()


@pytest.mark.parametrize("how", [pickle.dumps, copy.copy, copy.deepcopy])
def test_a_loader_cannot_be_pickled_or_copied_and_says_so(dataset, how):
    # pickle named a lambda inside make_loader; deepcopy failed inside DALI and warned from a half-made pipeline;
    # copy.copy shared the pipeline and epoch of the original
    loader = small_loader(dataset / "list_11.txt", train=False)
    with pytest.raises(TypeError, match="DaliLoader cannot be pickled or copied: it owns a DALI pipeline"):
        how(loader)
    assert sum(len(labels) for _, labels in loader) == 11  # still whole


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("num_shards, largest", [(1, 11), (2, 6), (4, 3)])
def test_a_batch_larger_than_a_shard_builds_the_pipeline_for_the_shard(dataset, train, num_shards, largest):
    # batch_size=4096 on 18 images took 5.5 GB (DALI allocates every slot of a batch); 65536 died in bad_alloc
    for shard_id in range(num_shards):
        loader = small_loader(dataset / "list_11.txt", train=train, batch_size=4096, num_shards=num_shards,
                              shard_id=shard_id)
        assert loader.batch_size == loader.pipeline.max_batch_size == largest
        labels = torch.cat([y for _, y in loader])
        assert len(labels) == len(set(labels.tolist())) == loader.num_samples and len(loader) == 1
