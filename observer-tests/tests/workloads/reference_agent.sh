#!/bin/sh
# The reference agent workload of the evidence-volume issue: what a coding
# agent does for one small task on a developer machine, shared by the
# `evidence_volume` integration test and `cargo xtask bench workload`.
#
#   reference_agent.sh setup DIR       prepares DIR (run it unwatched)
#   reference_agent.sh run DIR PORT    the workload (run it as the agent)
#
# `run` reaches every tool through `#!/usr/bin/env bash` wrappers on a long
# PATH whose first directories do not hold them, as version managers' shims
# do (pyenv, nvm, asdf): env tries execve in each directory first, so one
# command costs a dozen failed execs. It then runs python -c, node -e, git
# status in a small repository, grep over a tree, cat, ls, a command that
# exists nowhere, and one TCP connect to 127.0.0.1:PORT (bash's /dev/tcp).
set -eu
mode=$1
dir=$2

# Twelve directories tried before the wrappers', as on a developer's PATH.
path_prefix() {
    p=
    for i in 01 02 03 04 05 06 07 08 09 10 11 12; do
        p="$p$dir/path/empty$i:"
    done
    echo "$p$dir/path/wrappers"
}

case "$mode" in
setup)
    rm -rf "$dir"
    mkdir -p "$dir/path/wrappers" "$dir/tree/src/a" "$dir/tree/src/b" "$dir/tree/docs"
    for i in 01 02 03 04 05 06 07 08 09 10 11 12; do
        mkdir -p "$dir/path/empty$i"
    done
    for tool in python3 node git grep cat ls; do
        printf '#!/usr/bin/env bash\nexec %s "$@"\n' "$tool" > "$dir/path/wrappers/w$tool"
        chmod 755 "$dir/path/wrappers/w$tool"
    done
    i=0
    for sub in src/a src/b docs; do
        for n in 1 2 3 4 5 6 7 8; do
            i=$((i + 1))
            printf 'line one of file %s\nTODO: item %s\nlast line\n' "$i" "$i" \
                > "$dir/tree/$sub/file$n.txt"
        done
    done
    git -C "$dir/tree" init -q
    git -C "$dir/tree" -c user.email=bench@example.invalid -c user.name=bench add .
    git -C "$dir/tree" -c user.email=bench@example.invalid -c user.name=bench \
        commit -q -m initial
    echo changed >> "$dir/tree/src/a/file1.txt"
    ;;
run)
    port=$3
    export PATH="$(path_prefix):/usr/local/bin:/usr/bin:/bin"
    cd "$dir/tree"
    wpython3 -c 'import json, os; print(json.dumps(sorted(os.listdir("src"))))' > /dev/null
    wnode -e 'console.log(require("os").hostname())' > /dev/null
    wgit status --short > /dev/null
    wgrep -rn TODO . > /dev/null
    wcat src/a/file1.txt docs/file2.txt > /dev/null
    wls -la src/a src/b > /dev/null
    # A command on no PATH directory: every attempt fails.
    wno-such-tool --version > /dev/null 2>&1 || true
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; exec 3>&-"
    ;;
*)
    echo "usage: $0 setup DIR | run DIR PORT" >&2
    exit 2
    ;;
esac
