#!/usr/bin/env python3
"""A dialer's CheckCall in Python, with stubs generated from the proto.

    pip install grpcio grpcio-tools
    python3 -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT proto/dialgate/v1/dialgate.proto
    PYTHONPATH=OUT python3 examples/python/check_call.py 127.0.0.1:50051 acme-energy-it "+39 333 123 4567" +390212345678

Prints one line: the verdict, the reasons and the decision id. Exit code 0
for ALLOW, 1 for DENY, 2 when there is no decision (the dialer must not dial).
"""

import sys
import uuid

import grpc

from dialgate.v1 import dialgate_pb2, dialgate_pb2_grpc


def main(argv):
    address, campaign, number, caller_id = argv[1:5]
    key = argv[5] if len(argv) > 5 else None
    metadata = [("authorization", f"Bearer {key}")] if key else None
    with grpc.insecure_channel(address) as channel:
        stub = dialgate_pb2_grpc.ComplianceGatewayStub(channel)
        request = dialgate_pb2.CheckCallRequest(
            called_number=number,
            caller_id=caller_id,
            campaign_id=campaign,
            # One new id per dial attempt; the same id only to retry it.
            request_id=str(uuid.uuid4()),
        )
        try:
            answer = stub.CheckCall(request, timeout=2.0, metadata=metadata)
        except grpc.RpcError as err:
            print(f"NO DECISION {err.code().name}: {err.details()}")
            return 2
    verdict = dialgate_pb2.Verdict.Name(answer.verdict).removeprefix("VERDICT_")
    reasons = ",".join(
        dialgate_pb2.ReasonCode.Name(r.code).removeprefix("REASON_CODE_") for r in answer.reasons
    )
    print(f"{verdict} {reasons} {answer.decision_id} {answer.normalized_number}")
    return 0 if verdict == "ALLOW" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
