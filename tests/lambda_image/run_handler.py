"""Runs inside the monitoring image's environment (tests/lambda_image/environment.py), as the Lambda
runtime would: imports the handler named on the command line from LAMBDA_TASK_ROOT (the staged image
context), calls it with the event read from stdin and a context, and prints its answer as the last line.
Only the standard library and what the image holds are importable here."""

import importlib
import json
import sys
import time
import uuid


class Context:
    function_name = "clinrisk-image-test"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:clinrisk-image-test"
    memory_limit_in_mb = 3008
    aws_request_id = str(uuid.uuid4())
    log_group_name = "/aws/lambda/clinrisk-image-test"
    log_stream_name = "2027/01/15/[$LATEST]0"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.time()) * 1000)

    deadline = time.time() + 600


if __name__ == "__main__":
    module_name, function_name = sys.argv[1].rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), function_name)
    answer = handler(json.load(sys.stdin), Context())
    print("HANDLER-ANSWER " + json.dumps(answer))
