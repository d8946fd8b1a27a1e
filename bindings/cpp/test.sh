#!/usr/bin/env bash
# Builds bindings/cpp/test.cpp against the release library into target/cpp-tests and runs it:
# once plain and once under AddressSanitizer + UBSan. Also compiles the header alone with
# strict warnings. Runs from any directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="$root/target/release"
out="$root/target/cpp-tests"
CXX="${CXX:-g++}"

if [ ! -f "$lib/libedgebuf.so" ]; then
  echo "building the release library"
  (cd "$root" && cargo build --release --lib)
fi
# cargo names the file libedgebuf.so but its SONAME is libedgebuf.so.0, which the dynamic
# loader looks for at run time.
[ -e "$lib/libedgebuf.so.0" ] || ln -sfn libedgebuf.so "$lib/libedgebuf.so.0"
mkdir -p "$out"

flags=(-std=c++17 -Wall -Wextra -Werror -pthread -I"$root/include" -I"$here")
link=(-L"$lib" -ledgebuf -Wl,-rpath,"$lib")

echo "--- header alone, strict warnings"
printf '#include "edgebuf.hpp"\nint main() { edgebuf::Config c; return c.get() ? 0 : 1; }\n' >"$out/header_only.cpp"
"$CXX" "${flags[@]}" -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast \
  -Wnon-virtual-dtor -Wuseless-cast "$out/header_only.cpp" -o "$out/header_only" "${link[@]}"
"$out/header_only"

echo "--- test (plain)"
"$CXX" "${flags[@]}" -O1 -g "$here/test.cpp" -o "$out/test" "${link[@]}"
"$out/test"

echo "--- test (AddressSanitizer + UndefinedBehaviorSanitizer)"
"$CXX" "${flags[@]}" -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
  "$here/test.cpp" -o "$out/test-asan" "${link[@]}"
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  "$out/test-asan"

echo "--- the README example (compiled and run against a dead local port)"
readme_tmp=$(mktemp -d)
{
  printf '#include <iostream>\n#include <string>\n#include "edgebuf.hpp"\n'
  printf 'int main(int argc, char** argv) {\n  if (argc < 2) return 2;\n  std::string key = "k";\n'
  awk '/^```cpp$/{f=1; next} /^```$/{if (f) exit} f' "$here/README.md" \
    | grep -v '^#include' \
    | sed -e 's|"/var/lib/app/predictions.db"|std::string(argv[1]) + "/readme.db"|' \
          -e 's|"https://ingest.example.com/v1/predictions"|"http://127.0.0.1:9/ingest"|'
  printf '  (void)st;\n  return all_sent ? 1 : 0;  /* endpoint down: records stay on disk */\n}\n'
} >"$out/readme_example.cpp"
"$CXX" "${flags[@]}" "$out/readme_example.cpp" -o "$out/readme_example" "${link[@]}"
"$out/readme_example" "$readme_tmp"
rm -rf "$readme_tmp"
echo "README example ran"
