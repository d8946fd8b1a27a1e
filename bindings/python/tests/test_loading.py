"""Where the binding loads libedgebuf from: EDGEBUF_LIB, the library inside the package, the
system's loader; nothing else. A library planted in a directory that looks like a checkout
(include/edgebuf.h, Cargo.toml, target/release/libedgebuf.so) is never loaded: its
constructor would run on `import edgebuf`."""
import os
import pathlib
import shutil
import subprocess
import sys

import edgebuf

PACKAGE = pathlib.Path(edgebuf.__file__).resolve().parent
REAL_LIB = pathlib.Path(os.environ["EDGEBUF_LIB"]).resolve()


def run_import(pkg_parent, env):
    code = "import edgebuf, sys; sys.stdout.write(edgebuf.library_path)"
    return subprocess.run([sys.executable, "-c", code], cwd=str(pkg_parent), env=env,
                          capture_output=True, text=True, timeout=60)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEBUF_LIB", "LD_LIBRARY_PATH", "PYTHONPATH")}
    env.update(extra)
    return env


def test_a_planted_library_is_never_loaded(tmp_path):
    # A fake checkout around a copy of the package, with a library whose constructor leaves
    # a mark.
    fake = tmp_path / "checkout"
    (fake / "include").mkdir(parents=True)
    (fake / "include" / "edgebuf.h").write_text("/* planted */\n")
    (fake / "Cargo.toml").write_text("[package]\nname = \"planted\"\n")
    (fake / "target" / "release").mkdir(parents=True)
    mark = tmp_path / "constructor-ran"
    src = tmp_path / "planted.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void planted(void) '
                   '{ FILE *f = fopen("%s", "w"); if (f) fclose(f); }\n' % mark)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(fake / "target/release/libedgebuf.so"), str(src)],
                   check=True)
    shutil.copytree(PACKAGE, fake / "bindings" / "python" / "edgebuf",
                    ignore=shutil.ignore_patterns("__pycache__", "libedgebuf.so"))
    # The real library is where the system's loader finds it.
    lib_dir = tmp_path / "system-lib"
    lib_dir.mkdir()
    shutil.copy(REAL_LIB, lib_dir / "libedgebuf.so.0")
    r = run_import(fake / "bindings" / "python", clean_env(LD_LIBRARY_PATH=str(lib_dir)))
    assert r.returncode == 0, r.stderr
    assert not mark.exists(), "the planted library's constructor ran"
    assert r.stdout == "libedgebuf.so.0", r.stdout


def test_the_library_inside_the_package_comes_before_the_system(tmp_path):
    pkg = tmp_path / "site" / "edgebuf"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REAL_LIB, pkg / "libedgebuf.so")
    r = run_import(tmp_path / "site", clean_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout == str((pkg / "libedgebuf.so").resolve()), r.stdout


def test_without_any_library_the_message_says_what_to_do(tmp_path):
    pkg = tmp_path / "site" / "edgebuf"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__", "libedgebuf.so"))
    r = run_import(tmp_path / "site", clean_env())
    if r.returncode == 0:  # an installed libedgebuf.so.0 on this machine: nothing to show
        assert r.stdout == "libedgebuf.so.0"
        return
    assert "EDGEBUF_LIB" in r.stderr and "wheel" in r.stderr, r.stderr
