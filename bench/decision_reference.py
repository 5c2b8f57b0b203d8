"""The yardstick beside `clerk approve --code` (`bench/decision.py`): the same proven decision sent through
Prefect's own client, the least a judge's command could do: resume the paused run with the decision, then
read the run until it ends. `python -m bench.decision_reference API_URL RUN_ID DECISION_JSON`; prints the
run's final state type."""

from __future__ import annotations

import json
import sys
import time
import uuid


def main() -> int:
    run, decision = uuid.UUID(sys.argv[2]), json.loads(sys.argv[3])
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        result = client.resume_flow_run(run, run_input=decision)
        if result.status.value != "ACCEPT":
            print(f"refused: {result.details}")
            return 1
        while True:
            state = client.read_flow_run(run).state
            if state is not None and state.is_final():
                print(state.type.value)
                return 0 if state.is_completed() else 1
            time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
