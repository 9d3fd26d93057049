"""`file_label`: labels found by the file names fn.readers.numpy reports (the plugin's fn.dali_has.file_label).

The operator's argument and input errors reach Python as ValueError (DALI's mapping of std::invalid_argument)."""
import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types

from dali_has import fused
from dali_has.file_label import file_label, one_label_per_name

pytestmark = pytest.mark.fused


@pytest.fixture(autouse=True)
def plugin():
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")


@pytest.fixture
def pixel_files(tmp_path):
    """Five .npy images whose first pixel is their index, in two folders (names are relative paths)."""
    names = []
    for i in range(5):
        name = f"{'ab'[i % 2]}/{i}.npy"
        (tmp_path / name).parent.mkdir(exist_ok=True)
        np.save(tmp_path / name, np.full((2, 3, 3), i, np.uint8))
        names.append(name)
    return tmp_path, names


def run_labels(root, names, labels, *, batch_size=5, label_names=None, label_input=None):
    @pipeline_def(batch_size=batch_size, num_threads=1, device_id=None, seed=1)
    def pipe():
        images = fn.readers.numpy(files=names, file_root=str(root), random_shuffle=True)
        if label_input is not None:
            return images, fn.dali_has.file_label(label_input(images), names="\0".join(label_names or names),
                                                  labels=labels)
        return images, file_label(images, names=label_names or names, labels=labels)

    p = pipe()
    p.build()
    images, found = p.run()
    return [int(np.array(image).flat[0]) for image in images], [int(np.array(label)) for label in found]


def test_each_sample_gets_the_label_of_its_file_in_any_order(pixel_files):
    root, names = pixel_files
    labels = [10 * i + 7 for i in range(5)]
    for batch_size in (5, 3):  # shuffled, and wrapping into the next epoch
        indices, found = run_labels(root, names, labels, batch_size=batch_size)
        assert found == [labels[i] for i in indices]


def test_labels_come_out_as_int64_scalars(pixel_files):
    root, names = pixel_files

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        images = fn.readers.numpy(files=names, file_root=str(root))
        return file_label(images, names=names, labels=list(range(5)))

    p = pipe()
    p.build()
    (labels,) = p.run()
    assert labels.dtype == types.INT64 and labels.shape() == [(), ()]


def test_a_name_missing_from_the_table_is_an_error_naming_it(pixel_files):
    root, names = pixel_files
    with pytest.raises(ValueError, match=r'named "a/0.npy", which `names` does not hold'):
        run_labels(root, names, [0, 1, 2, 3], label_names=names[1:])


def test_names_and_labels_must_pair_up(pixel_files):
    root, names = pixel_files
    with pytest.raises(ValueError, match="have 5 and 2 entries"):
        run_labels(root, names, [0, 1], label_input=lambda images: fn.get_property(images, key="source_info"))
    with pytest.raises(ValueError, match="5 names and 2 labels: give one label per name"):
        run_labels(root, names, [0, 1])


def test_the_operator_refuses_a_name_with_two_labels(pixel_files):
    root, names = pixel_files
    source_info = lambda images: fn.get_property(images, key="source_info")  # noqa: E731
    with pytest.raises(ValueError, match=r'File "a/0.npy" is listed with labels 0 and 9'):
        run_labels(root, names, [0, 1, 2, 3, 4, 9], label_names=[*names, names[0]], label_input=source_info)


def test_input_must_be_names(pixel_files):
    root, names = pixel_files
    with pytest.raises(ValueError, match="expected each sample's name as 1-D uint8"):
        run_labels(root, names, list(range(5)), label_input=lambda images: images)


def test_a_name_with_two_labels_is_refused():
    assert one_label_per_name(["a", "b", "a"], [1, 2, 1])
    assert not one_label_per_name(["a", "b", "a"], [1, 2, 3])
    with pytest.raises(ValueError, match="'a' is listed with two different labels"):
        file_label(None, names=["b", "a", "a"], labels=[0, 1, 2])
    with pytest.raises(ValueError, match="holds a NUL character"):
        file_label(None, names=["a\0b", "c"], labels=[1, 2])


@pytest.mark.parametrize("names, labels, said", [
    (["a", "b"], [0, 2**31], r"labels\[1\]=2147483648 must be a whole number >= 0 and <= 2147483647"),  # was -2**31
    (["a", "b"], [0, 2**40], r"labels\[1\]=1099511627776"),  # was 0
    (["a", "b"], [0.5, 1], r"labels\[0\]=0.5 must be a whole number"),  # was 0
    (["a", "b"], [True, 1], r"labels\[0\]=True"),
    (["a", "b"], [-1, 1], r"labels\[0\]=-1"),
    ("a.npy", [0], "names: give a list of the reader's file names"),  # said: zip() argument 2 is shorter
    ([], [], "names: give a list of the reader's file names"),  # said: a name holds a NUL character
    (["a", ""], [0, 1], "a name is empty"),
])
def test_labels_dali_cannot_hold_and_names_that_are_not_a_list_are_refused(names, labels, said):
    with pytest.raises(ValueError, match=said):
        file_label(None, names=names, labels=labels)
