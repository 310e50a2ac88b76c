package org.apache.kafka.common.utils;

/**
 * A bridge for test_connect.py, not part of Kafka: connect-file is published on Maven Central up
 * to 4.3.1 only, and its connectors' {@code version()} calls
 * {@code org.apache.kafka.common.utils.AppInfoParser.getVersion()}, which kafka-clients 4.4.0
 * moved to {@code org.apache.kafka.common.utils.internals}. Without this class the 4.4.0 worker
 * cannot create a FileStream connector (NoClassDefFoundError when it validates the config).
 * Delete it, and the connect-file override in pom.xml, once connect-file 4.4.0 is published.
 */
public final class AppInfoParser {
    private AppInfoParser() {}

    public static String getVersion() {
        return org.apache.kafka.common.utils.internals.AppInfoParser.getVersion();
    }

    public static String getCommitId() {
        return org.apache.kafka.common.utils.internals.AppInfoParser.getCommitId();
    }
}
