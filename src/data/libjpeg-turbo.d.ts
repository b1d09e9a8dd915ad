// The cornerstone libjpeg-turbo WASM build ships no types: the part of its embind API we use.
declare module '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs' {
  export interface JpegFrameInfo { width: number; height: number; bitsPerSample: number; componentCount: number; isSigned: boolean }
  export interface JPEGDecoder {
    getEncodedBuffer(size: number): Uint8Array;
    readHeader(): void;
    decode(): void;
    getDecodedBuffer(): Uint8Array;
    getFrameInfo(): JpegFrameInfo;
    delete(): void;
  }
  export interface LibJpegTurbo {
    JPEGDecoder: new () => JPEGDecoder;
  }
  export interface ModuleOptions {
    wasmBinary?: ArrayBuffer | Uint8Array;
    locateFile?: (path: string, scriptDirectory: string) => string;
  }
  const factory: (opts?: ModuleOptions) => Promise<LibJpegTurbo>;
  export default factory;
}
