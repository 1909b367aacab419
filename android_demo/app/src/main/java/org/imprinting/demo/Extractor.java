package org.imprinting.demo;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;

import java.nio.FloatBuffer;
import java.util.Collections;

/** The bundle's ONNX extractor (int8 when the bundle has one) run by ONNX Runtime Android. */
final class Extractor {
    private final OrtEnvironment env;
    private final OrtSession session;
    private final String input;
    private final long[] shape;

    Extractor(ModelBundle bundle) throws OrtException {
        env = OrtEnvironment.getEnvironment();
        OrtSession.SessionOptions options = new OrtSession.SessionOptions();
        // Two threads leave the other cores to the camera and the UI.
        options.setIntraOpNumThreads(2);
        options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
        session = env.createSession(bundle.model, options);
        input = session.getInputNames().iterator().next();
        int s = bundle.manifest.preprocess.inputSize;
        shape = "NHWC".equals(bundle.extractor.layout) ? new long[] {1, s, s, 3} : new long[] {1, 3, s, s};
    }

    /** One preprocessed input (3 * S * S floats) to its raw embedding (D floats). */
    float[] run(float[] x) throws OrtException {
        OnnxTensor tensor = OnnxTensor.createTensor(env, FloatBuffer.wrap(x), shape);
        try {
            OrtSession.Result result = session.run(Collections.singletonMap(input, tensor));
            try {
                float[][] out = (float[][]) result.get(0).getValue();
                return out[0];
            } finally {
                result.close();
            }
        } finally {
            tensor.close();
        }
    }

    void close() {
        try {
            session.close();
        } catch (OrtException e) {
            // Closing at shutdown: nothing left to do with the error.
        }
    }
}
