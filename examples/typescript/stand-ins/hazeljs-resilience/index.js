"use strict";
// Stand-in for the unpublished @hazeljs/resilience (see ../README.md). The error classes are
// real enough for `instanceof`; the policies are not implemented: the example switches them off.
class CircuitBreakerError extends Error {}
class RetryExhaustedError extends Error {}
function missing(name) {
  return class {
    constructor() {
      throw new Error(`${name} needs the real @hazeljs/resilience; pass enableRetry: false, enableCircuitBreaker: false and no rateLimitPerMinute`);
    }
  };
}
module.exports = {
  CircuitBreakerError,
  RetryExhaustedError,
  CircuitBreaker: missing("CircuitBreaker"),
  RetryPolicy: missing("RetryPolicy"),
  TokenBucketLimiter: missing("TokenBucketLimiter"),
};
