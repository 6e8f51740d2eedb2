#!/usr/bin/env bash
# Builds the LessPy library and the demo with Mono's mcs.
#   bash csharp/build.sh [OUTDIR]     (default: csharp/bin)
# Produces OUTDIR/LessPy.dll, OUTDIR/LessPy.xml, OUTDIR/LessPyDemo.exe (headless, Initialize<T>),
# OUTDIR/NotebookDemo.exe (a live notebook, Connect<T>) and OUTDIR/exporting_module.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/bin}"
mkdir -p "$out"
command -v mcs >/dev/null || { echo "build.sh: mcs not found: install Mono (apt-get install -y mono-devel)" >&2; exit 127; }

# one version for Python and C#: lesspy_kernel.__version__ (LessPy.csproj reads the same line)
version="$(sed -n 's/^__version__ = "\([^"]*\)"$/\1/p' "$here/../lesspy_kernel/__init__.py")"
[ -n "$version" ] || { echo "build.sh: no __version__ in lesspy_kernel/__init__.py" >&2; exit 1; }
mkdir -p "$out/obj"
printf '[assembly: System.Reflection.AssemblyVersion("%s")]\n[assembly: System.Reflection.AssemblyInformationalVersion("%s")]\n' \
    "${version%%[!0-9.]*}" "$version" > "$out/obj/LessPyVersion.cs"

mcs -target:library -unsafe -optimize+ -nologo \
    -out:"$out/LessPy.dll" -doc:"$out/LessPy.xml" \
    "$here"/LessPy/*.cs "$out/obj/LessPyVersion.cs"

mcs -target:exe -unsafe -optimize+ -nologo \
    -r:"$out/LessPy.dll" -out:"$out/LessPyDemo.exe" \
    "$here"/Demo/*.cs

mcs -target:exe -unsafe -optimize+ -nologo \
    -r:"$out/LessPy.dll" -out:"$out/NotebookDemo.exe" \
    "$here"/NotebookDemo/*.cs

# Mono's ahead-of-time image (LessPy.dll.so, loaded by Mono beside the dll): a fresh process's Connect and first
# call need no JIT (PERFORMANCE.md has the figures). Best effort: it needs the binutils (as, ld); without it the dll is JIT-compiled.
mono --aot "$out/LessPy.dll" >"$out/obj/aot.log" 2>&1 || { rm -f "$out/LessPy.dll.so"; echo "build.sh: no AOT image of LessPy.dll (see $out/obj/aot.log)"; }

cp "$here/Demo/exporting_module.py" "$out/exporting_module.py"
echo "built $out/LessPy.dll, $out/LessPyDemo.exe and $out/NotebookDemo.exe"
