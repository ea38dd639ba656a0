#!/usr/bin/env bash
# Makes a release: the source tarball of a commit (git archive) and a .src.rock that
# `luarocks build` installs with no network, both in DIR (default dist/), beside the rockspec.
#
#   tools/release.sh [-o DIR] [--ref REF | --worktree] [--check]
#   tools/release.sh --update-rockspec
#
# The version is written once, in project(VERSION) in CMakeLists.txt: CMake generates the
# rockspec from vt.rockspec.in. Before packing, the committed rockspec must be the generated one
# and no other tracked file may repeat the version (NEWS.md excepted).
#   --ref REF      release that commit (default HEAD)
#   --worktree     release the tracked files as they are now, uncommitted changes included (CI)
#   --check        then build the .src.rock into a fresh tree and load vt, its Lua modules and
#                  `vt-lua --help` from that tree
#   --update-rockspec  rewrite the committed rockspec from the template (after a version bump)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

die() { echo "release: $*" >&2; exit 1; }

out=dist ref=HEAD worktree=0 check=0 update=0
while [ $# -gt 0 ]; do
  case "$1" in
    -o) [ $# -ge 2 ] || die "-o needs a directory"; out=$2; shift ;;
    --ref) [ $# -ge 2 ] || die "--ref needs a commit"; ref=$2; shift ;;
    --worktree) worktree=1 ;;
    --check) check=1 ;;
    --update-rockspec) update=1 ;;
    -h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "usage: $0 [-o DIR] [--ref REF | --worktree] [--check] | --update-rockspec" >&2; exit 2 ;;
  esac
  shift
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Configures the tree $1 into $2 (extra arguments go to cmake) and prints the name of the
# rockspec CMake generated there.
configure() {
  local src=$1 build=$2
  shift 2
  cmake -S "$src" -B "$build" "$@" >"$build.log" 2>&1 || { cat "$build.log" >&2; die "cmake failed on $src"; }
  local specs=("$build"/vt-*.rockspec)
  [ ${#specs[@]} -eq 1 ] && [ -f "${specs[0]}" ] || die "CMake generated no single rockspec in $build"
  basename "${specs[0]}"
}

if [ "$update" -eq 1 ]; then
  rockspec=$(configure "$root" "$tmp/build")
  for old in vt-*.rockspec; do
    [ -e "$old" ] && [ "$old" != "$rockspec" ] && rm -v "$old"
  done
  cp "$tmp/build/$rockspec" "$rockspec"
  echo "wrote $rockspec (commit it)"
  exit 0
fi

if [ "$worktree" -eq 1 ]; then
  # A commit of the working tree's tracked files, made without touching the index or HEAD.
  ref=$(GIT_AUTHOR_NAME=release GIT_AUTHOR_EMAIL=release@localhost \
        GIT_COMMITTER_NAME=release GIT_COMMITTER_EMAIL=release@localhost git stash create)
  ref=${ref:-HEAD}
  untracked=$(git ls-files --others --exclude-standard)
  [ -z "$untracked" ] || echo "release: untracked files are left out: $(tr '\n' ' ' <<<"$untracked")" >&2
elif [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "release: uncommitted changes are left out (commit them, or give --worktree)" >&2
fi
git rev-parse -q --verify "$ref^{commit}" >/dev/null || die "no such commit: $ref"

# The released tree, configured as it is: its CMakeLists.txt says the version.
mkdir "$tmp/tree"
git archive "$ref" | tar -x -C "$tmp/tree"
rockspec=$(configure "$tmp/tree" "$tmp/canonical")
version=${rockspec#vt-}
version=${version%-*.rockspec}
cmp -s "$tmp/canonical/$rockspec" "$tmp/tree/$rockspec" ||
  die "the committed $rockspec is missing or not what vt.rockspec.in gives: run tools/release.sh --update-rockspec"
for spec in "$tmp/tree"/vt-*.rockspec; do
  [ "$(basename "$spec")" = "$rockspec" ] || die "$(basename "$spec") is not this version's rockspec: remove it"
done
# The version as a word: not inside an address such as 10.2.0.1 (dots then digits).
v_re="(^|[^0-9.])${version//./\\.}(\$|[^.0-9]|\\.[^0-9])"
if copies=$(git grep -n -E -e "$v_re" "$ref" -- . ':!CMakeLists.txt' ':!NEWS.md' ":!$rockspec"); then
  die "the version $version is written outside CMakeLists.txt (NEWS.md and $rockspec aside):
${copies//$ref:/}"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
tarball=vt-$version.tar.gz
rock=${rockspec%.rockspec}.src.rock
git archive --format=tar.gz --prefix="vt-$version/" -o "$out/$tarball" "$ref"
cp "$tmp/tree/$rockspec" "$out/$rockspec"
# luarocks pack fetches the source from its absolute path: the packed rockspec names the tarball
# by a file:// URL. Building the .src.rock uses the tarball inside it, whatever the URL's directory.
mkdir "$tmp/pack"
configure "$tmp/tree" "$tmp/pack/build" -DVT_SOURCE_URL="file://$out/$tarball" >/dev/null
cp "$tmp/pack/build/$rockspec" "$tmp/pack/$rockspec"
rm -f "$out/$rock"
(cd "$out" && luarocks --lua-version=5.4 pack "$tmp/pack/$rockspec" >"$tmp/pack.log" 2>&1) ||
  { cat "$tmp/pack.log" >&2; die "luarocks pack failed"; }
[ -f "$out/$rock" ] || die "luarocks pack wrote no $rock"
echo "release $version: $out/$tarball $out/$rock $out/$rockspec"

[ "$check" -eq 1 ] || exit 0

fresh=$tmp/fresh
luarocks --lua-version=5.4 build "$out/$rock" --tree="$fresh" --deps-mode=none >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log" >&2; die "luarocks build $rock failed"; }
# The environment `luarocks path` gives for the fresh tree (LUA_PATH, LUA_CPATH, PATH), in a
# directory holding nothing, so every module must come from that tree.
paths=$(luarocks --lua-version=5.4 path --tree "$fresh")
mkdir "$tmp/empty"
(eval "$paths" && cd "$tmp/empty" && lua5.4 - "$fresh" "$version" "$tmp/tree" <<'EOF') || die "the installed rock does not load"
local tree, version, src = ...
local function from_tree(name, path)
    local file = assert(package.searchpath(name, path), name .. " not found")
    assert(file:sub(1, #tree + 1) == tree .. "/", name .. " loads from " .. file .. ", not the fresh tree")
end
from_tree("vt", package.cpath)
local vt = require "vt"
assert(vt._VERSION == "vt " .. version, "vt._VERSION is " .. tostring(vt._VERSION))
-- Every Lua module of the released tree is installed and loads.
local list = assert(io.popen("cd '" .. src .. "/lua' && find vt -name '*.lua' | sort"))
local count = 0
for file in list:lines() do
    local name = file:gsub("%.lua$", ""):gsub("/", ".")
    from_tree(name, package.path)
    require(name)
    count = count + 1
end
list:close()
print(("fresh tree: vt %s and %d Lua modules load"):format(version, count))
EOF
if [ -e "$tmp/tree/bin/vt-lua" ]; then
  (eval "$paths" && cd "$tmp/empty" && [ "$(command -v vt-lua)" = "$fresh/bin/vt-lua" ] && vt-lua --help >/dev/null) ||
    die "vt-lua --help failed from the fresh tree"
  echo "fresh tree: vt-lua --help works"
fi
