package io.nadi.flink;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import java.io.File;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real {@code nadi standalone} process for a test: free 127.0.0.1 ports, its own temporary
 * data directory, killed and deleted on {@link #close()}. The binary comes from the system
 * property {@code nadi.bin} (set by build.sh), else {@code NADI_BIN}, else
 * {@code target/debug/nadi} above the working directory.
 */
public final class NadiServer implements AutoCloseable {
    private final Process process;
    private final Path dataDir;
    private final String controller;
    private final String binary;

    private NadiServer(Process process, Path dataDir, String controller, String binary) {
        this.process = process;
        this.dataDir = dataDir;
        this.controller = controller;
        this.binary = binary;
    }

    public static String binary() {
        String bin = System.getProperty("nadi.bin", System.getenv("NADI_BIN"));
        if (bin == null) {
            bin = "../../target/debug/nadi";
        }
        if (!new File(bin).canExecute()) {
            throw new IllegalStateException("nadi binary not found at " + bin + ": build it with cargo build -p nadi-server");
        }
        return bin;
    }

    public static NadiServer start() throws IOException, InterruptedException {
        String bin = binary();
        Path dir = Files.createTempDirectory("nadi-flink-it");
        int[] ports = freePorts(3);
        String controller = "http://127.0.0.1:" + ports[0];
        ProcessBuilder pb = new ProcessBuilder(bin, "standalone", "--data-dir", dir.resolve("data").toString(),
                "--controller-listen", "127.0.0.1:" + ports[0], "--segment-listen", "127.0.0.1:" + ports[1],
                "--http-listen", "127.0.0.1:" + ports[2], "--log-file-size", "20MiB");
        pb.redirectErrorStream(true).redirectOutput(dir.resolve("nadi.log").toFile());
        NadiServer server = new NadiServer(pb.start(), dir, controller, bin);
        server.awaitReady();
        return server;
    }

    private static int[] freePorts(int n) throws IOException {
        List<ServerSocket> sockets = new ArrayList<>();
        try {
            int[] ports = new int[n];
            for (int i = 0; i < n; i++) {
                ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress());
                sockets.add(s);
                ports[i] = s.getLocalPort();
            }
            return ports;
        } finally {
            for (ServerSocket s : sockets) {
                s.close();
            }
        }
    }

    /** Waits (at most 30 s) until the controller answers a request. */
    private void awaitReady() throws InterruptedException, IOException {
        long deadline = System.currentTimeMillis() + 30_000;
        try (NadiClient c = new NadiClient(controller)) {
            while (true) {
                if (!process.isAlive()) {
                    throw new IOException("nadi standalone exited early: " + log());
                }
                try {
                    c.getStream("ready-check", "ready-check");
                    return;
                } catch (NadiException e) {
                    if (e.reason().startsWith("NOT_FOUND")) {
                        return;
                    }
                    if (System.currentTimeMillis() > deadline) {
                        throw new IOException("nadi standalone not ready after 30 s: " + e.getMessage());
                    }
                }
            }
        }
    }

    public String controller() {
        return controller;
    }

    public String log() throws IOException {
        return Files.readString(dataDir.resolve("nadi.log"), StandardCharsets.UTF_8);
    }

    /** Runs a client command of the real CLI against this server; returns stdout, fails on exit != 0. */
    public String cli(String... args) throws IOException, InterruptedException {
        return cli(null, args);
    }

    /** As {@link #cli(String...)}, with {@code stdin} (may be null) as standard input. */
    public String cli(byte[] stdin, String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(binary);
        cmd.addAll(Arrays.asList(args));
        cmd.add("--controller");
        cmd.add(controller);
        Path out = Files.createTempFile(dataDir, "cli", ".out");
        Path err = Files.createTempFile(dataDir, "cli", ".err");
        Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        if (stdin != null) {
            p.getOutputStream().write(stdin);
        }
        p.getOutputStream().close();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("nadi " + String.join(" ", args) + " timed out");
        }
        String stdout = Files.readString(out, StandardCharsets.UTF_8);
        if (p.exitValue() != 0) {
            throw new IOException("nadi " + String.join(" ", args) + " failed (" + p.exitValue() + "): "
                    + Files.readString(err, StandardCharsets.UTF_8));
        }
        return stdout;
    }

    @Override
    public void close() throws IOException, InterruptedException {
        process.destroy();
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
        try (Stream<Path> files = Files.walk(dataDir)) {
            files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }
}
