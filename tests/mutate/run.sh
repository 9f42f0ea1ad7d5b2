#!/usr/bin/env bash
# Mutation check (`make mutate`; not part of `make test`): applies each mutant of tests/mutate/mutants.txt,
# one at a time, to a scratch copy of the tree (the working tree is never touched), builds what its
# tests need and runs them. A mutant is KILLED when its tests fail (or time out), SURVIVED when they
# pass. STALE: its code snippet is no longer in the file (the code changed: update the mutant); AMBIGUOUS:
# the snippet occurs more than once; BUILD-ERROR: the mutated tree does not build; BASELINE-FAIL: its
# tests already fail without the mutant. Only killed and survived count in the score.
#
#     tests/mutate/run.sh [ID|AREA ...]        (none: every mutant)
# Environment: MUTATE_DIR (scratch, default build/mutate), MUTATE_TIMEOUT (seconds per test command,
# default 300), MUTATE_KEEP=1 (keep the scratch tree's build outputs between runs: faster reruns).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
LIST=tests/mutate/mutants.txt
WORK=${MUTATE_DIR:-build/mutate}
TIMEOUT=${MUTATE_TIMEOUT:-300}
case $WORK in /*) ;; *) WORK=$ROOT/$WORK;; esac
TREE=$WORK/tree
START=$(date +%s)

mkdir -p "$WORK/logs" "$WORK/pristine"
cc -std=c11 -O2 -Wall -Wextra -o "$WORK/mutate_apply" tests/mutate/apply.c || { echo "cannot build the mutant applier"; exit 2; }

# ---- parse the list: one record per mutant, fields in parallel arrays ----
ids=(); areas=(); files=(); builds=(); tests=(); finds=(); repls=(); notes=()
cur=-1
while IFS= read -r line || [ -n "$line" ]; do
    case $line in
        '#'*) continue ;;
        '['*)
            cur=$((cur + 1))
            read -r tag area file <<<"$line"
            tag=${tag#[}; ids[cur]=${tag%]}; areas[cur]=$area; files[cur]=$file
            builds[cur]=""; tests[cur]=""; finds[cur]=""; repls[cur]=""; notes[cur]="" ;;
        'build: '*) builds[cur]=${line#build: } ;;
        'test: '*) tests[cur]=${line#test: } ;;
        'why: '*) notes[cur]=${line#why: } ;;
        '-') finds[cur]+=$'\n' ;;
        '- '*) finds[cur]+="${line#- }"$'\n' ;;
        '+') repls[cur]+=$'\n' ;;
        '+ '*) repls[cur]+="${line#+ }"$'\n' ;;
        '') ;;
        *) echo "$LIST: cannot read line: $line"; exit 2 ;;
    esac
done <"$LIST"
n_all=$((cur + 1))

# selection
selected=()
for ((i = 0; i < n_all; i++)); do
    if [ $# -eq 0 ]; then selected+=("$i"); continue; fi
    for want in "$@"; do
        if [ "$want" = "${ids[i]}" ] || [ "$want" = "${areas[i]}" ]; then selected+=("$i"); break; fi
    done
done
[ ${#selected[@]} -gt 0 ] || { echo "no mutant matches: $*"; exit 2; }

# ---- the scratch tree: tracked and untracked-but-not-ignored files of the working tree ----
[ "${MUTATE_KEEP:-0}" = 1 ] || rm -rf "$TREE"
mkdir -p "$TREE"
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$TREE"
restore() { cp "$WORK/pristine/$1" "$TREE/$1"; }
for i in "${selected[@]}"; do
    f=${files[i]}; mkdir -p "$WORK/pristine/$(dirname "$f")"; cp "$TREE/$f" "$WORK/pristine/$f"
done

run_tests() { # run_tests INDEX LOG: builds and tests in the scratch tree; 0 pass, 1 fail, 2 build error
    local i=$1 log=$2
    (cd "$TREE" && nice -n 10 make -s -j1 ${builds[i]}) >"$log" 2>&1 || return 2
    (cd "$TREE" && ABC_REQUIRE_ALL=0 timeout "$TIMEOUT" nice -n 10 bash -c "${tests[i]}") >>"$log" 2>&1 || return 1
    return 0
}

# ---- baseline: every distinct test command must pass on the unmutated tree ----
declare -A baseline
for i in "${selected[@]}"; do
    key="${builds[i]}|${tests[i]}"
    [ -n "${baseline[$key]+x}" ] && continue
    run_tests "$i" "$WORK/logs/baseline.$i.log"; baseline[$key]=$?
    [ "${baseline[$key]}" = 0 ] || echo "baseline fails for ${ids[i]}'s tests (see $WORK/logs/baseline.$i.log): ${tests[i]}"
done

# ---- the mutants ----
declare -A area_total area_killed
killed=0; survived=0; other=0; survivors=(); others=()
printf '%-8s %-14s %-13s %6s  %s\n' id area result seconds tests
for i in "${selected[@]}"; do
    id=${ids[i]}; f=${files[i]}; area=${areas[i]}
    log=$WORK/logs/$id.log
    t0=$(date +%s)
    printf '%s' "${finds[i]%$'\n'}" >"$WORK/find.txt"
    printf '%s' "${repls[i]%$'\n'}" >"$WORK/replace.txt"
    "$WORK/mutate_apply" "$TREE/$f" "$WORK/find.txt" "$WORK/replace.txt"
    rc=$?
    if [ "${baseline["${builds[i]}|${tests[i]}"]}" != 0 ]; then result=BASELINE-FAIL
    elif [ $rc = 3 ]; then result=STALE
    elif [ $rc = 4 ]; then result=AMBIGUOUS
    elif [ $rc != 0 ]; then result=ERROR
    else
        run_tests "$i" "$log"
        case $? in 0) result=SURVIVED;; 1) result=KILLED;; *) result=BUILD-ERROR;; esac
    fi
    restore "$f"
    cmp -s "$TREE/$f" "$WORK/pristine/$f" || { echo "scratch file $f not restored"; exit 2; }
    secs=$(($(date +%s) - t0))
    printf '%-8s %-14s %-13s %6d  %s\n' "$id" "$area" "$result" "$secs" "${tests[i]}"
    case $result in
        KILLED) killed=$((killed + 1)); area_total[$area]=$((${area_total[$area]:-0} + 1)); area_killed[$area]=$((${area_killed[$area]:-0} + 1)) ;;
        SURVIVED) survived=$((survived + 1)); area_total[$area]=$((${area_total[$area]:-0} + 1)); survivors+=("$id ($area): ${notes[i]}") ;;
        *) other=$((other + 1)); others+=("$id: $result") ;;
    esac
done
# the scratch tree's last restored file is back to the working tree's bytes; nothing outside $WORK was written

echo
echo "== per area (killed/counted)"
for a in $(printf '%s\n' "${!area_total[@]}" | sort); do printf '   %-14s %d/%d\n' "$a" "${area_killed[$a]:-0}" "${area_total[$a]}"; done
if [ ${#survivors[@]} -gt 0 ]; then echo "== survived"; printf '   %s\n' "${survivors[@]}"; fi
if [ ${#others[@]} -gt 0 ]; then echo "== not counted (stale, ambiguous, build error, baseline failure)"; printf '   %s\n' "${others[@]}"; fi
counted=$((killed + survived))
score=$(awk -v k=$killed -v c=$counted 'BEGIN { printf "%.1f", c ? 100 * k / c : 0 }')
echo "mutants: ${#selected[@]} run, $killed killed, $survived survived, $other not counted; score $score % ($killed/$counted); $(($(date +%s) - START)) s"
[ $survived -eq 0 ] && [ $other -eq 0 ]
