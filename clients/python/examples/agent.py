"""An example agent: begins a task, gets a credential for one role, uses it, and ends the task.

    SPIFFE_ENDPOINT_SOCKET=unix://$PWD/.svid-broker/dev/agent.sock \
    SVID_BROKER_ADDR=localhost:8443 python3 examples/agent.py --env dev --role token/demo

Prints what it got as JSON, never the credential's value.
"""
import argparse
import json
import sys

from svid_broker import BrokerClient, BrokerError, PendingApproval


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="dev")
    p.add_argument("--role", default="token/demo")
    p.add_argument("--intent", default="python example agent")
    p.add_argument("--justification", default="example")
    p.add_argument("--wait", action="store_true", help="wait for approval when one is needed")
    p.add_argument("--tool", default="", help="the tool the agent is calling (context.tool_name)")
    p.add_argument("--session", default="", help="the agent's session id (context.session_id)")
    p.add_argument("--plan", default="", help="the agent's plan (context.plan)")
    args = p.parse_args()
    # The agent's own account of the call: recorded as asserted by the agent, given to policy.
    context = {k: v for k, v in {"tool_name": args.tool, "session_id": args.session, "plan": args.plan}.items() if v}
    try:
        with BrokerClient() as broker, broker.task(args.env, args.intent, context=context) as task:
            got = task.issue(args.role, justification=args.justification, context=context)
            if isinstance(got, PendingApproval):
                print(json.dumps({"status": "pending_approval", "approval_id": got.approval_id}))
                if not args.wait:
                    return 3
                got = task.await_approval(got.approval_id)
            # Use the credential here (got.token as a bearer token for a jwt); never print it.
            print(
                json.dumps(
                    {
                        "status": "issued",
                        "agent": broker.spiffe_id,
                        "task_id": task.id,
                        "lease_id": got.lease_id,
                        "role": got.role,
                        "kind": got.kind,
                        "expires_at": got.expires_at,
                        "token_length": len(got.token),
                    }
                )
            )
        print(json.dumps({"task_ended": task.id}))
        return 0
    except BrokerError as err:
        print("refused: %s" % err, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
