"""The merged model gets the permissions of a plain write (0666/0777 minus the umask), not the 0600/0700 that
safetensors' temp file and mkdtemp leave: a container's merged/ must stay readable by the host user."""

import os
import stat
import tempfile

import pytest
import torch
from safetensors.torch import save_file

from ftr.merge import honour_umask, publish


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def staged(tmp_path):
    folder = tempfile.mkdtemp(prefix=".merge-", dir=tmp_path)
    save_file({"w": torch.zeros(2)}, os.path.join(folder, "model.safetensors"))
    os.mkdir(os.path.join(folder, "sub"), 0o700)
    return tmp_path, folder


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                        (0o002, 0o664, 0o775)])
def test_publish_gives_the_umask_permissions(staged, umask, file_mode, dir_mode):
    parent, folder = staged
    assert mode(os.path.join(folder, "model.safetensors")) == 0o600  # what safetensors leaves, or this proves nothing
    previous = os.umask(umask)
    try:
        publish(parent / os.path.basename(folder), parent / "merged")
    finally:
        os.umask(previous)
    final = parent / "merged"
    assert (mode(final), mode(final / "sub"), mode(final / "model.safetensors")) == (dir_mode, dir_mode, file_mode)


def test_symlinks_are_left_alone(tmp_path):
    target = tmp_path / "outside"
    target.write_text("x")
    os.chmod(target, 0o600)
    folder = tmp_path / "staged"
    folder.mkdir()
    (folder / "link").symlink_to(target)
    honour_umask(folder)
    assert mode(target) == 0o600
