"""Driver shared by the end-to-end test scripts: `SCRIPT CASE --thetanet PATH --mpiexec CMD`
runs the script's function case_CASE(tmp) in a fresh temporary directory, with the parsed
arguments in the script's global ARGS, and prints `passed` or the failed assertion."""
import argparse
import sys
import tempfile


def main(script_globals, prefix):
    cases = {k[5:]: v for k, v in script_globals.items() if k.startswith("case_")}
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(cases))
    ap.add_argument("--thetanet", required=True)
    ap.add_argument("--mpiexec", required=True)
    script_globals["ARGS"] = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            cases[script_globals["ARGS"].case](tmp)
        except AssertionError as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
    print("passed")
    return 0
