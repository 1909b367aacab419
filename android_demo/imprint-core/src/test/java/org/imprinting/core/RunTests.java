package org.imprinting.core;

import org.junit.runner.JUnitCore;
import org.junit.runner.Result;
import org.junit.runner.notification.Failure;

/** Runs imprint-core's JUnit tests without Gradle and prints the plain "N passed, N failed" line. */
public final class RunTests {
    private RunTests() {
    }

    public static void main(String[] args) {
        Result r = JUnitCore.runClasses(PreprocessorTest.class, ClassStoreTest.class, MergeTest.class, StoreCheckTest.class, ShotOffsetsTest.class,
                UnknownPolicyTest.class, JsonNpyTest.class);
        for (Failure f : r.getFailures()) {
            System.out.println("FAILED " + f.getTestHeader() + ": " + f.getMessage());
            if (!(f.getException() instanceof AssertionError)) {
                f.getException().printStackTrace(System.out);
            }
        }
        int failed = r.getFailureCount();
        int skipped = r.getIgnoreCount() + r.getAssumptionFailureCount();
        int passed = r.getRunCount() - failed - r.getAssumptionFailureCount();
        System.out.println("imprint-core: " + passed + " passed, " + failed + " failed, " + skipped + " skipped");
        System.exit(failed == 0 ? 0 : 1);
    }
}
